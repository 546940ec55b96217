"""Initial weights of the built-in networks (``weight_init``): the signal reaches the output at step 0."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cmvae import CMVAE
from cmvae.estimator import ParameterError
from cmvae.nets import build_networks
from cmvae.nets.images import _ResBlock
from cmvae.nets.init import fan_in, he_init


def output_sensitivity(net: nn.Module, inputs: torch.Tensor) -> float:
    """Spread of ``net``'s outputs across ``inputs`` (std over the batch, averaged over outputs) relative
    to the outputs' size (root mean square): about 0 when the output ignores its input."""
    with torch.no_grad():
        out = net(inputs).flatten(1)
    return float(out.std(0).mean() / out.pow(2).mean().sqrt())


@pytest.mark.parametrize("shape", [(3, 28, 28), (1, 64, 64), (20,)])
def test_encoders_and_decoders_respond_to_their_input_at_initialisation(shape):
    torch.manual_seed(0)
    x = torch.rand(64, *shape)
    z = torch.randn(64, 16)
    he = build_networks(shape, 8, 8, weight_init="he")
    torch.manual_seed(0)
    default = build_networks(shape, 8, 8, weight_init="torch")
    for (he_net, torch_net, inputs) in ((he[0], default[0], x), (he[1], default[1], z)):
        assert output_sensitivity(he_net, inputs) > 0.1
        if len(shape) == 3:  # PyTorch's default shrinks the signal ~3x per layer: deep conv nets start blind
            assert output_sensitivity(torch_net, inputs) < 0.03


def test_he_decoders_starts_the_decoders_variance_preserving_and_keeps_pytorchs_encoders():
    shape = (3, 28, 28)
    torch.manual_seed(0)
    encoder, decoder = build_networks(shape, 8, 8, branches="separate", weight_init="he-decoders")
    torch.manual_seed(0)
    default_encoder, default_decoder = build_networks(shape, 8, 8, branches="separate", weight_init="torch")
    for name, value in default_encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name
    z = torch.randn(64, 16)
    assert output_sensitivity(decoder, z) > 0.1
    assert output_sensitivity(default_decoder, z) < 0.03


def test_he_init_keeps_the_variance_of_a_deep_relu_stack():
    torch.manual_seed(0)
    net = he_init(nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(256, 256), nn.ReLU())], nn.Linear(256, 256)))
    x = torch.randn(2048, 256)
    with torch.no_grad():
        ratio = float(net(x).var() / x.var())
    assert 0.4 < ratio < 2.5  # the default initialisation: ~(1/6)^8 after 8 ReLU layers
    assert all(float(m.bias.abs().max()) == 0 for m in net if isinstance(m, nn.Linear))


def test_fan_in_of_a_transposed_convolution_counts_the_taps_that_reach_one_output():
    up = nn.ConvTranspose2d(64, 32, kernel_size=3, stride=2, padding=1)
    assert fan_in(up) == round(64 * 9 / 4)
    assert fan_in(nn.Conv2d(64, 32, kernel_size=3)) == 64 * 9
    assert fan_in(nn.Linear(10, 3)) == 10


def test_residual_blocks_start_as_the_identity():
    block = he_init(nn.Sequential(_ResBlock(8)))
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_the_authors_networks_keep_pytorchs_initialisation():
    states = []
    for init in ("he", "torch"):
        torch.manual_seed(0)
        encoder, decoder = build_networks((3, 28, 28), 8, 8, arch="paper", weight_init=init)
        states.append({**encoder.state_dict(), **decoder.state_dict()})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_bad_weight_init_is_refused_by_name():
    with pytest.raises(ParameterError, match="weight_init must be one of 'torch', 'he', 'he-decoders', got 'xavier'"):
        CMVAE(weight_init="xavier").fit([torch.rand(8, 4).numpy(), torch.rand(8, 3).numpy()])


def test_weight_init_is_saved_and_old_saves_read_as_torch(tmp_path):
    views = [torch.rand(32, 4).numpy(), torch.rand(32, 3).numpy()]
    model = CMVAE(n_clusters=2, epochs=1, progress=False, accelerator="cpu", weight_init="he").fit(views)
    path = model.save(tmp_path / "m")
    assert CMVAE.load(path).weight_init == "he"
    config = json.loads((path / "config.json").read_text())
    config["params"].pop("weight_init")
    (path / "config.json").write_text(json.dumps(config))
    (path / "SHA256SUMS").unlink()  # an old save (before checksums and before weight_init)
    assert CMVAE.load(path).weight_init == "torch"
    assert CMVAE().weight_init == "torch"
