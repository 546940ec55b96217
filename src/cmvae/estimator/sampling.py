"""Generation: ``sample`` and ``sample_latents`` from the prior, ``generate`` from any subset of
observed modalities, ``decode_text`` for generated token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..schema import ArrayLike
from .params import ParameterError, check_int, check_number, pick_device, seeded


class SamplingMixin:
    """Generation methods of :class:`~cmvae.estimator.base.MultimodalEstimator`."""

    def _sampling_args(self, n: Any, cluster: Any, seed: Any) -> tuple[int, int | None]:
        """Checked ``n``, ``cluster`` and ``seed`` of :meth:`sample` (ParameterError naming the argument)."""
        n = check_int("n", n, 1)
        if seed is not None:
            check_int("seed", seed, 0)
        if cluster is None:
            return n, None
        cluster = check_int("cluster", cluster, 0)
        n_clusters = getattr(self, "n_clusters", None)
        if n_clusters is not None and cluster >= n_clusters:
            raise ParameterError(f"cluster must be a cluster id in 0..{n_clusters - 1}, got {cluster}")
        return n, cluster

    @torch.no_grad()
    def sample_latents(self, n: int, cluster: int | None = None, *, seed: int | None = None,
                       temperature: float = 1.0) -> np.ndarray:
        """Shared latents ``[n, shared_dim]`` drawn from the prior p(z) (CMVAE: c ~ pi, z ~ p(z|c);
        ``cluster`` fixes c), its scales times ``temperature``. :meth:`sample` decodes exactly these draws."""
        module, _ = self._fitted()
        n, cluster = self._sampling_args(n, cluster, seed)
        temperature = check_number("temperature", temperature, 0.0, strict=True)
        with seeded(seed):
            return module.sample_prior_z(n, cluster, temperature).cpu().numpy()

    @torch.no_grad()
    def sample(self, n: int, cluster: int | None = None, *, seed: int | None = None,
               temperature: float = 1.0) -> list[np.ndarray]:
        """Unconditional samples: c ~ pi (or ``cluster``), z ~ p(z|c), w_m ~ p(w_m), x_m = decoder mean.

        ``temperature`` multiplies the scales of p(z|c) (1, the default: the model's prior; e.g. 0.7 keeps the
        shared draws nearer each cluster's mean, where the encoded data lie, at the cost of variety; the
        private w_m are drawn from p(w_m) as they are).

        Returns M arrays ``[n, *shape_m]`` (images in the units of [0, 1]; tabular data in its original
        units). The ``arch="paper"`` image decoders are not squashed, so their means can leave [0, 1] a
        little: they are returned as they are (clip them for display, as :mod:`cmvae.plots` does).
        """
        module, schema = self._fitted()
        n, cluster = self._sampling_args(n, cluster, seed)
        temperature = check_number("temperature", temperature, 0.0, strict=True)
        module.eval()
        with seeded(seed):
            z = module.sample_prior_z(n, cluster, temperature)
            decoded = module.generate_from_z(z, range(module.n_modalities))
        return [schema.from_model_output(m, decoded[m]) for m in range(module.n_modalities)]

    @torch.no_grad()
    def generate(
        self,
        views: Sequence[ArrayLike | None],
        targets: Sequence[int] | None = None,
        *,
        use_mean: bool = False,
        batch_size: int = 512,
        seed: int | None = None,
        mask: ArrayLike | None = None,
    ) -> list[np.ndarray | None]:
        """Cross-modal generation from any subset of observed modalities.

        ``views``: one entry per modality, ``None`` for the unobserved ones (at least one
        observed, all observed with the same N). z comes from the mixture posterior of the
        observed modalities (per sample, an observed modality picked uniformly, then
        z ~ q(z | x_m); ``use_mean=True``: the mixture mean, i.e. the average of the observed
        unimodal means), w_m ~ p(w_m) for each target, and x_m is the decoder mean.
        ``targets`` defaults to the unobserved modalities (every modality when all are observed).
        ``mask`` ``[N, M]`` (True = observed) adds per-sample holes: each sample's z comes from
        the mixture of its own observed modalities.

        Returns a list of length M: ``[N, *shape_m]`` arrays at the target positions, None elsewhere.
        """
        module, schema = self._fitted()
        data = self._input(views, mask, each_modality=True)
        holes = None if bool(data.observed[:, data.given].all()) else data.observed  # per-sample holes only
        n_mod = schema.n_modalities
        if targets is None:
            targets = [m for m, x in enumerate(data.views) if x is None] or list(range(n_mod))
        targets = _checked_targets(targets, n_mod)
        if seed is not None:
            check_int("seed", seed, 0)
        check_int("batch_size", batch_size, 1)
        device = pick_device(self.accelerator)
        module.to(device).eval()
        parts: dict[int, list[np.ndarray]] = {t: [] for t in targets}
        try:
            with seeded(seed):
                for start in range(0, data.n_samples, batch_size):
                    batch = data.model_input(start, start + batch_size, device)
                    hole = None if holes is None else holes[start : start + batch_size]
                    z = module.sample_subset_z(batch, use_mean=use_mean, mask=hole)
                    for t, x in module.generate_from_z(z, targets).items():
                        parts[t].append(schema.from_model_output(t, x))
        finally:
            module.to("cpu")
        return [np.concatenate(parts[m]) if m in parts else None for m in range(n_mod)]

    def decode_text(self, ids: ArrayLike, modality: int | None = None) -> list[str]:
        """Token ids ``[N, L]`` of a text modality (e.g. from :meth:`sample` or :meth:`generate`) as
        strings, each up to its first ``<eos>``. ``modality`` defaults to the only text modality."""
        from ..data.text import Vocabulary

        _, schema = self._fitted()
        text = [m for m, spec in enumerate(schema.modalities) if spec.kind == "text"]
        if modality is None:
            if len(text) != 1:
                raise ValueError(f"the model has {len(text)} text modalities {text}: pass modality=")
            modality = text[0]
        return Vocabulary(schema.vocabulary(modality)).decode_batch(np.asarray(ids))

def _checked_targets(targets: Any, n_modalities: int) -> list[int]:
    """``targets`` of :meth:`~MultimodalEstimator.generate` as distinct modality ids (ParameterError otherwise)."""
    if not isinstance(targets, (list, tuple, np.ndarray, range)):
        raise ParameterError(f"targets must be a list of modality ids (e.g. [1]), got {targets!r}")
    ids = []
    for t in targets:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise ParameterError(f"targets must be integer modality ids, got {t!r} in {list(targets)!r}")
        ids.append(int(t))
    if not ids:
        raise ParameterError("targets is empty: name at least one modality to generate")
    bad = [t for t in ids if not 0 <= t < n_modalities]
    if bad:
        raise ParameterError(f"targets {bad} out of range: modalities are 0..{n_modalities - 1}")
    if len(set(ids)) != len(ids):
        raise ParameterError(f"targets {ids} repeat a modality")
    return ids

