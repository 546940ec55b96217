"""``encode`` and ``transform``: checked user data to posterior parameters and shared latent codes.

Fully observed data runs through ``module.encode`` (every modality, one batch at a time); data with
holes (``None`` views, a ``mask``) through ``module.encode_subset`` (the given modalities of each
batch), with NaN at the unobserved entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..inputs import Input
from ..missing import masked_mean
from ..objectives import Posteriors
from ..schema import ArrayLike
from .params import pick_device


class EncodingMixin:
    """``encode`` and ``transform`` of :class:`~cmvae.estimator.base.MultimodalEstimator`."""

    @torch.no_grad()
    def encode(
        self, views: Sequence[ArrayLike | None], batch_size: int = 512, *, mask: ArrayLike | None = None
    ) -> Posteriors:
        """Unimodal posterior parameters, on CPU: ``[M, N, dim]`` per field.

        ``None`` entries in ``views`` (unobserved modality) and ``mask`` ``[N, M]`` (True =
        observed; see :mod:`cmvae.missing`) mark missing data: those entries are NaN.
        """
        return self._encode(self._input(views, mask), batch_size)

    def _encode(self, data: Input, batch_size: int = 512) -> Posteriors:
        """Posteriors ``[M, N, dim]`` per field of checked data (NaN at its unobserved entries), on CPU."""
        module, schema = self._fitted()
        device = pick_device(self.accelerator)
        module.to(device).eval()
        fields: list[list[torch.Tensor]] = [[], [], [], []]
        try:
            with torch.no_grad():
                for start in range(0, data.n_samples, batch_size):
                    batch = data.model_input(start, start + batch_size, device)
                    if data.complete:
                        post = module.encode(batch)
                        for f, t in zip(fields, (post.z_loc, post.z_scale, post.w_loc, post.w_scale)):
                            f.append(t.cpu())
                        continue
                    ids, post = module.encode_subset(batch)
                    for f, t in zip(fields, (post.z_loc, post.z_scale, post.w_loc, post.w_scale)):
                        full = torch.full((schema.n_modalities, *t.shape[1:]), float("nan"))
                        full[ids] = t.cpu()
                        f.append(full)
        finally:
            module.to("cpu")
        parts = [torch.cat(f, dim=1) for f in fields]
        if not data.complete:
            hole = ~data.observed.t().unsqueeze(-1)  # [M, N, 1]
            parts = [t.masked_fill(hole, float("nan")) for t in parts]
        return Posteriors(*parts)

    def transform(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Shared latent codes ``[N, shared_dim]``: the mean of q(z|X), i.e. the average of the unimodal means.

        With missing data (``None`` views or ``mask`` ``[N, M]``, True = observed): the mean of the
        mixture of the observed modalities' posteriors, i.e. the average of the observed means.
        """
        data = self._input(views, mask)
        post = self._encode(data)
        if data.complete:
            return post.z_loc.mean(0).numpy()
        return masked_mean(post.z_loc, data.observed).numpy()
