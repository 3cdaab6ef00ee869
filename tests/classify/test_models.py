import pytest
import torch
from torch import nn

from occtool.classify.checkpoint import load_classifier, save_classifier
from occtool.classify.models import OcclusionClassifier, create_classifier, list_classifiers
from occtool.errors import CheckpointError, ConfigError

from ..conftest import shared_or_skip


def test_registry():
    assert set(list_classifiers()) == {"mfn_head", "mfn_ms_head", "mobilenet_v3_small", "resnet18"}
    with pytest.raises(ConfigError, match="unknown classifier"):
        create_classifier("vgg16")
    with pytest.raises(ConfigError, match="file not found"):
        create_classifier("resnet18", backbone_weights="/no/such/weights.pth")


def test_torchvision_weights_file_loads_all_but_the_last_layer(tmp_path):
    from torchvision.models import mobilenet_v3_small

    torch.manual_seed(1)
    net = mobilenet_v3_small(weights=None)
    torch.save(net.state_dict(), tmp_path / "mnv3.pth")
    model = create_classifier("mobilenet_v3_small", backbone_weights=tmp_path / "mnv3.pth")
    assert torch.equal(model.trunk.features[0][0].weight, net.features[0][0].weight)
    assert model.head.out_features == 3
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a torchvision state dict"):
        create_classifier("mobilenet_v3_small", backbone_weights=tmp_path / "other.pth")


def test_multiscale_trunk_ends_with_the_final_map_and_round_trips(tmp_path):
    shared_or_skip("weights", "mobilefacenet")
    ms, single = create_classifier("mfn_ms_head"), create_classifier("mfn_head")
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    with torch.inference_mode():
        f_ms, f = ms.features(x), single.features(x)
    assert f_ms.shape == (2, 704, 7, 7) and torch.allclose(f_ms[:, 192:], f, atol=1e-5)
    assert not any(p.requires_grad for p in ms.trunk.parameters()) and ms.trainable_parameters()
    ms.train()
    assert not ms.trunk.training  # frozen BatchNorm statistics
    save_classifier(tmp_path / "m.pt", model=ms.eval(), config={})
    loaded = load_classifier(tmp_path / "m.pt").model
    with torch.inference_mode():
        assert torch.allclose(loaded(x), ms(x), atol=1e-6)


def test_wrong_checkpoint_kinds(tmp_path):
    torch.save({"format": "occtool", "format_version": 1}, tmp_path / "face.pt")
    with pytest.raises(CheckpointError, match="face-model checkpoint"):
        load_classifier(tmp_path / "face.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an occtool classifier"):
        load_classifier(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "missing.pt")


def test_options_head_width_and_flip_average_round_trip(tmp_path):
    torch.manual_seed(0)
    wide = create_classifier("mfn_ms_head", backbone_weights=None, head_width=16)
    assert wide.head[0].out_channels == 16 and wide.options == {"head_width": 16, "flip_average": False}
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    ramp = torch.linspace(-1, 1, 224).view(1, 1, 1, 224)  # a left-right asymmetric "net"
    net = dict(arch="t", trunk=nn.Identity(), head=nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 3)), frozen_trunk=False)
    tiny = OcclusionClassifier(**net, options={"flip_average": True}).eval()
    with torch.inference_mode():
        expected = 0.5 * (tiny.head(x + ramp) + tiny.head(torch.flip(x + ramp, dims=[3])))
        assert torch.allclose(tiny(x + ramp), expected, atol=1e-5)
        assert not torch.allclose(tiny.head(x + ramp), expected, atol=1e-3)
    model = create_classifier("mobilenet_v3_small", backbone_weights=None, flip_average=True).eval()
    assert model.flip_average
    for m in (model, wide.eval()):
        save_classifier(tmp_path / "m.pt", model=m, config={})
        loaded = load_classifier(tmp_path / "m.pt").model
        assert loaded.options == m.options
        with torch.inference_mode():
            assert torch.allclose(loaded(x), m(x), atol=1e-6)
    with pytest.raises(ConfigError, match="head_width"):
        create_classifier("resnet18", backbone_weights=None, head_width=32)
