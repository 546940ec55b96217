"""Variance-preserving weight initialisation of the built-in networks (``weight_init="he"`` / ``"he-decoders"``).

PyTorch's default initialisation of ``Linear``/``Conv`` layers (uniform, variance ``1 / (3 fan_in)``)
shrinks the signal's variance about threefold at every layer. Through the six weighted layers of the
light image encoder a PolyMNIST image changes the encoder's output by about 0.1 % of the spread of
its outputs across modalities, and the decoders' output hardly depends on the latent: training first
has to grow the signal back, which takes hundreds of steps, and how many depends on the seed.

:func:`he_init` draws every weight from ``N(0, gain^2 / fan_in)`` (He et al., 2015), ``gain`` sqrt(2)
before a (Si)LU and 1 for the last layer of a network (whose output is linear), and zeroes biases.
``fan_in`` counts the inputs that reach one output: ``in_channels x kernel`` for a convolution,
``in_channels x kernel / stride`` for a transposed one. The last convolution of every residual branch
starts at zero, so a residual block starts as the identity (the variance does not double per block).
Token embeddings keep ``N(0, 1)``.

``"he-decoders"`` re-initialises only the decoders: the latent reaches the pixels from step 0, while the
encoders start from PyTorch's small weights, so a code does not start as a random hash of its whole image.

Measured on the quickstart (``benchmarks/RESULTS.md``, "Initial weights"): with ``"he"`` the shared
digit enters z 3-5x sooner, but the light networks then overfit 8,000 PolyMNIST tuples (the training
loss keeps falling while the held-out bound worsens from epoch ~6) and the 20-minute clusters were
worse on one seed of two. ``"he-decoders"`` brings the digit in by epoch 7-8 in every seed tried (PyTorch's
initialisation: epoch 8 to 16, depending on the seed); the latent then declines unless the learning rate falls
(``lr_decay``), and it falls further with more epochs. PyTorch's initialisation stays the default (it also did
better on small tabular data).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: The ``weight_init`` names: ``"torch"`` (PyTorch's own, the default), ``"he"`` (:func:`he_init` for every
#: network) and ``"he-decoders"`` (:func:`he_init` for the decoders, PyTorch's for the encoders).
WEIGHT_INITS = ("torch", "he", "he-decoders")

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def fan_in(layer: nn.Module) -> int:
    """Number of inputs summed into one output of ``layer`` (a Linear, Conv or ConvTranspose layer)."""
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        return weight.shape[1]
    kernel = math.prod(weight.shape[2:])
    if isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        # weight [in, out / groups, *kernel]: a stride-s output sees about kernel / s^d of the taps
        return max(1, round(weight.shape[0] * kernel / math.prod(layer.stride)))
    return weight.shape[1] * kernel


@torch.no_grad()
def he_init(net: nn.Module) -> nn.Module:
    """Re-initialise ``net``'s weighted layers in place (see the module docstring); returns ``net``.

    The last weighted layer registered in ``net`` is taken as its output layer (gain 1); modules with
    a ``residual_branch_end`` attribute name the layer that ends their residual branch (zeroed)."""
    layers = [m for m in net.modules() if isinstance(m, _WEIGHTED)]
    for i, layer in enumerate(layers):
        gain = 1.0 if i == len(layers) - 1 else math.sqrt(2.0)
        layer.weight.normal_(0.0, gain / math.sqrt(fan_in(layer)))
        if layer.bias is not None:
            layer.bias.zero_()
    for module in net.modules():
        end = getattr(module, "residual_branch_end", None)
        if isinstance(end, _WEIGHTED):
            end.weight.zero_()
    return net


def initialise(net: nn.Module, weight_init: str, *, decoder: bool = False) -> nn.Module:
    """``net`` (a ``decoder`` or an encoder) initialised by the scheme named ``weight_init`` (one of
    :data:`WEIGHT_INITS`)."""
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    variance_preserving = weight_init == "he" or (decoder and weight_init == "he-decoders")
    return he_init(net) if variance_preserving else net
