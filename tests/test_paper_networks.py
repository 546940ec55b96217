"""arch="paper": the authors' networks (parameter counts, shapes, a tiny fit, unbounded decoder outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cmvae import CMVAE
from cmvae.nets import BranchedEncoder, build_networks
from cmvae.nets.paper import PaperImageDecoder, PaperResBlock, paper_sizes, upsample2, upsampled_conv3x3
from cmvae.plots import save_image_grid

REPO = Path(__file__).resolve().parents[1]


def n_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def test_resblock_by_hand():
    torch.manual_seed(0)
    block = PaperResBlock(4, 6)
    x = torch.randn(2, 4, 5, 5)
    lrelu = torch.nn.functional.leaky_relu
    dx = block.conv_1(lrelu(block.conv_0(lrelu(x, 0.2)), 0.2))
    torch.testing.assert_close(block(x), block.shortcut(x) + 0.1 * dx)
    assert block.conv_0.out_channels == 4 and block.shortcut.bias is None
    assert isinstance(PaperResBlock(5, 5).shortcut, torch.nn.Identity)


def test_sizes():
    assert paper_sizes(28, 28) == [(28, 28), (14, 14), (7, 7)]
    assert paper_sizes(64, 64)[-1] == (2, 2) and len(paper_sizes(64, 64)) == 6


def test_polymnist_parameter_count_and_shapes():
    """5 modalities of 3x28x28, z and w of 32 dimensions: 4,431,299 parameters per modality, 22.16 M in all
    (counted by hand from the layer list in the module docstring; the public reimplementation says ~22.2 M)."""
    enc, dec = build_networks((3, 28, 28), 32, 32, arch="paper", branches="separate")
    assert isinstance(enc, BranchedEncoder)
    branch = 1792 + 73_856 + 118_976 + 475_520 + (256 * 7 * 7 + 1) * 64  # conv, 3 ResBlocks, loc + scale heads
    assert n_params(enc.shared) == n_params(enc.private) == branch
    assert n_params(dec) == (64 + 1) * 256 * 49 + 475_392 + 118_912 + 73_856 + 1731
    assert 5 * n_params(enc, dec) == 22_156_495
    x = torch.rand(3, 3, 28, 28)
    assert enc(x).shape == (3, 128)
    assert dec(torch.randn(4, 64)).shape == (4, 3, 28, 28)


def test_cubicc_shapes():
    enc, dec = build_networks((3, 64, 64), 64, 32, arch="paper", branches="separate")
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 192)
    assert dec(torch.randn(3, 96)).shape == (3, 3, 64, 64)
    assert dec.start_shape == (256, 2, 2)
    enc, dec = build_networks((32,), 64, 32, arch="paper", vocab_size=50)
    ids = torch.randint(0, 50, (4, 32))
    assert enc(ids).shape == (4, 192)
    assert dec(torch.randn(5, 96)).shape == (5, 32, 50)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_networks((30,), 64, 32, arch="paper", vocab_size=50)


def test_decoder_is_unbounded():
    torch.manual_seed(0)
    dec = PaperImageDecoder((3, 28, 28), 4)
    out = dec(10 * torch.randn(64, 4))
    assert out.min() < 0 or out.max() > 1


def test_tiny_fit_sample_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 256, (24, 3, 12, 12), dtype=np.uint8) for _ in range(2)]
    model = CMVAE(n_clusters=2, shared_dim=4, private_dim=2, arch="paper", scale_param="softmax", epochs=1,
                  batch_size=12, progress=False, accelerator="cpu", cluster_init="uniform", seed=0)
    model.fit(views)
    samples = model.sample(4, seed=0)
    assert [s.shape for s in samples] == [(4, 3, 12, 12)] * 2 and all(np.isfinite(s).all() for s in samples)
    labels = model.predict(views)
    assert labels.shape == (24,)
    # out-of-range values are clipped for display only
    png = save_image_grid([[s * 3 - 1 for s in samples]], tmp_path / "grid.png")
    assert png.exists()
    model.save(tmp_path / "model")
    again = CMVAE.load(tmp_path / "model")
    assert again.arch == "paper"
    np.testing.assert_array_equal(again.predict(views), labels)


def test_configs_use_the_paper_networks():
    for name in ("polymnist.yaml", "cubicc.yaml"):
        assert yaml.safe_load((REPO / "configs" / name).read_text())["model"]["arch"] == "paper"
        assert (REPO / "configs" / name).read_text() == (REPO / "src" / "cmvae" / "configs" / name).read_text()


def test_upsampled_blocks_equal_the_plain_layers():
    """The decoder computes Upsample + ResBlock at the low resolution: the same values and gradients as the
    plain layer sequence (float64)."""
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 5, 4, 6), torch.randn(7, 5, 3, 3), torch.randn(7)
    ref = torch.nn.functional.conv2d(upsample2(x.double()), w.double(), b.double(), padding=1)
    torch.testing.assert_close(upsampled_conv3x3(x.double(), w.double(), b.double()), ref)
    dec = PaperImageDecoder((3, 28, 28), 6).double()
    z = torch.randn(4, 6, dtype=torch.float64)
    plain = dec.to_image(torch.nn.functional.leaky_relu(dec.blocks(dec.fc(z).view(4, *dec.start_shape)), 0.2))
    fused = dec(z)
    torch.testing.assert_close(fused, plain)
    for g_fused, g_plain in zip(torch.autograd.grad(fused.square().sum(), list(dec.parameters())),
                                torch.autograd.grad(plain.square().sum(), list(dec.parameters()))):
        torch.testing.assert_close(g_fused, g_plain)
