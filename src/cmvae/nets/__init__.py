"""Per-modality networks, chosen from the data's shape.

Protocol every encoder/decoder follows (user modules too):

* encoder: ``x [B, *shape] -> [B, 2 * (shared_dim + private_dim)]``, read as
  (z location, z raw scale, w location, w raw scale); raw scales go through softplus.
* decoder: ``latent [N, shared_dim + private_dim] -> [N, *shape]`` (the likelihood's
  mean, or logits for Bernoulli likelihoods); text decoders give logits ``[N, L, vocab_size]``.
"""

from __future__ import annotations

from torch import nn

from .images import ImageDecoder, ImageEncoder
from .tabular import TabularDecoder, TabularEncoder
from .text import TextDecoder, TextEncoder

__all__ = ["ImageDecoder", "ImageEncoder", "TabularDecoder", "TabularEncoder", "TextDecoder", "TextEncoder",
           "build_networks"]


def build_networks(
    shape: tuple[int, ...],
    shared_dim: int,
    private_dim: int,
    *,
    arch: str = "light",
    likelihood: str = "laplace",
    vocab_size: int | None = None,
) -> tuple[nn.Module, nn.Module]:
    """Default (encoder, decoder) for one modality with per-sample ``shape``.

    ``[C, H, W]`` -> convolutional nets sized for the resolution; ``[D]`` -> MLPs; with
    ``vocab_size``, ``[L]`` token ids -> 1-D convolutional text nets (decoder logits ``[N, L, vocab_size]``).
    """
    out_dim = 2 * (shared_dim + private_dim)
    latent_dim = shared_dim + private_dim
    if vocab_size is not None:
        if len(shape) != 1:
            raise ValueError(f"a text modality has per-sample shape [L] (token ids), got {list(shape)}")
        return TextEncoder(vocab_size, shape[0], out_dim, arch), TextDecoder(latent_dim, vocab_size, shape[0], arch)
    if len(shape) == 3:
        if arch not in ("light", "resnet"):
            raise ValueError(f"unknown image architecture {arch!r}; choose 'light' or 'resnet'")
        sigmoid = likelihood in ("laplace", "gaussian")
        return ImageEncoder(shape, out_dim, arch), ImageDecoder(shape, latent_dim, arch, sigmoid=sigmoid)  # type: ignore[arg-type]
    if len(shape) == 1:
        hidden = (256, 256) if arch == "light" else (512, 512, 512)
        return TabularEncoder(shape[0], out_dim, hidden), TabularDecoder(latent_dim, shape[0], hidden)
    raise ValueError(
        f"no default network for per-sample shape {tuple(shape)}: expected [C, H, W] images or [D] "
        "feature vectors; pass your own encoder/decoder modules"
    )
