"""MMVAE (Shi, Siddharth, Paige & Torr 2019): mixture-of-experts posterior, no private latents,
standard prior; the objective is :func:`cmvae.objectives.multimodal_objective` with empty w
(IWAE/DReG over K samples of each q(z|x_m), every modality reconstructed from every z)."""

from __future__ import annotations

from typing import Any

from .base import StandardPriorVAE


class MMVAEModule(StandardPriorVAE):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.setdefault("private_dim", 0) != 0:
            raise ValueError(f"MMVAE has no private latents: private_dim must be 0, got {kwargs['private_dim']}")
        super().__init__(*args, **kwargs)
