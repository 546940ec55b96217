"""MMVAE+ (Palumbo, Daunhawer & Vogt 2023): shared z with the standard prior, private w_m, and
auxiliary r_n for the private latents of the cross-modal terms. Its objective is CMVAE's
(:func:`cmvae.objectives.multimodal_objective`) with log p(z) the standard prior, i.e. CMVAE
with one cluster whose mean is 0 and scale 1."""

from __future__ import annotations

from .base import StandardPriorVAE


class MMVAEPlusModule(StandardPriorVAE):
    """Everything is inherited: the standard prior is the only difference from CMVAE."""
