"""IR-ResNets load both published key layouts (arcface_torch and AdaFace) and fail clearly otherwise.

The reference nets below are written here from the public layouts (module tree and forward only),
independently of occtool's own modules, so the tests check the key mapping AND the architecture.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from occtool.errors import CheckpointError
from occtool.models import build_backbone, detect_layout, from_native, to_native
from occtool.models.iresnet import STAGE_BLOCKS, IResNet
from occtool.models.weights import read_state_dict

DEPTH = 18


# ----------------------------------------------------------------------------------- references
class AdaFaceBlockRef(nn.Module):  # AdaFace net.py BasicBlockIR
    def __init__(self, cin, cout, stride):
        super().__init__()
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceRef(nn.Module):  # AdaFace net.py Backbone(input_size=(112,112), mode="ir")
    def __init__(self, depth):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        blocks, cin = [], 64
        for cout, n in zip((64, 128, 256, 512), STAGE_BLOCKS[depth]):
            blocks += [AdaFaceBlockRef(cin, cout, 2)] + [AdaFaceBlockRef(cout, cout, 1) for _ in range(n - 1)]
            cin = cout
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=False))

    def forward(self, x):
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / torch.norm(x, 2, 1, True)


class ArcfaceBlockRef(nn.Module):  # arcface_torch iresnet.py IBasicBlock
    def __init__(self, cin, cout, stride, downsample):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class ArcfaceRef(nn.Module):  # arcface_torch iresnet.py IResNet
    def __init__(self, depth):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU(64)
        cin = 64
        for s, (cout, n) in enumerate(zip((64, 128, 256, 512), STAGE_BLOCKS[depth]), start=1):
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))
            blocks = [ArcfaceBlockRef(cin, cout, 2, down)] + [ArcfaceBlockRef(cout, cout, 1, None) for _ in range(n - 1)]
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.features = nn.BatchNorm1d(512)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        return x / torch.norm(x, 2, 1, True)


def perturb_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values everywhere (BN statistics and PReLU slopes included), so that no mapping
    error can hide behind default values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5)
            elif "bn" in name or name.startswith(("features", "output_layer.4")) or ".res_layer.0" in name:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            else:
                t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * (2.0 / max(1, t[0].numel())) ** 0.5)
    return module


@pytest.fixture(scope="module")
def x64():
    return torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _emb(model, x):
    with torch.no_grad():
        return model(x).embedding


class PickledThing:  # an arbitrary pickled object: weights_only must refuse it
    pass


# --------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("layout,ref_cls,bgr", [("adaface", AdaFaceRef, True), ("arcface", ArcfaceRef, False)])
def test_published_layout_loads_and_equals_reference(layout, ref_cls, bgr, x64):
    ref = perturb_(ref_cls(DEPTH)).double().eval()
    state = ref.state_dict()
    assert detect_layout(state) == layout
    model = build_backbone(f"ir{DEPTH}", weights=state).double().eval()
    assert model.variant == layout and model.name == f"ir{DEPTH}"
    assert model.input_spec.channel_order == ("BGR" if bgr else "RGB")
    with torch.no_grad():
        expected = ref(x64)
    torch.testing.assert_close(_emb(model, x64), expected, rtol=1e-9, atol=1e-9)


def test_both_layouts_name_the_same_modules():
    """AdaFace keys map onto arcface_torch names; the only differences are the two real ones
    (AdaFace's weightless first shortcut and its non-affine final BatchNorm1d)."""
    ada = set(to_native(AdaFaceRef(DEPTH).state_dict(), depth=DEPTH)[0])
    arc = set(ArcfaceRef(DEPTH).state_dict())
    assert arc - ada == {
        "layer1.0.downsample.0.weight", "features.weight", "features.bias",
        *{f"layer1.0.downsample.1.{b}" for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
    }
    assert ada - arc == set()


def _assert_holds(model, native_state):
    got = model.net.state_dict()
    assert set(got) == set(native_state)
    for k, v in native_state.items():
        assert torch.equal(got[k], v), k


def test_adaface_training_checkpoint_file(tmp_path):
    """AdaFace's published .ckpt: {"state_dict": {"model.<key>": ..., "head.kernel": ...}}."""
    ada = perturb_(AdaFaceRef(DEPTH), seed=5).state_dict()
    lightning = {"state_dict": {**{f"model.{k}": v for k, v in ada.items()}, "head.kernel": torch.zeros(512, 10)}}
    torch.save(lightning, tmp_path / "adaface.ckpt")
    a = build_backbone(f"ir{DEPTH}", weights=tmp_path / "adaface.ckpt")
    assert a.variant == "adaface"
    _assert_holds(a, to_native(ada, depth=DEPTH)[0])


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DistributedDataParallel
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()} | {"head.kernel": torch.zeros(2)}},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        lambda sd: {f"net.{k}": v for k, v in sd.items()},  # an occtool Backbone's own state dict
        lambda sd: {"format": "occtool", "model": {"state_dict": {f"backbone.net.{k}": v for k, v in sd.items()}
                                                    | {"head.conv1.weight": torch.zeros(1)}}},
    ],
)
def test_wrappers_and_prefixes_are_removed(tmp_path, wrap):
    sd = {"conv1.weight": torch.ones(2), "layer1.0.bn1.bias": torch.zeros(3)}
    torch.save(wrap(sd), tmp_path / "w.pth")
    got = read_state_dict(tmp_path / "w.pth")
    assert set(got) == set(sd) and all(torch.equal(got[k], v) for k, v in sd.items())


def test_safetensors_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    sd = {"module.conv1.weight": torch.arange(4.0)}
    safetensors.save_file(sd, str(tmp_path / "w.safetensors"))
    got = read_state_dict(tmp_path / "w.safetensors")
    assert list(got) == ["conv1.weight"] and torch.equal(got["conv1.weight"], torch.arange(4.0))


@pytest.mark.parametrize("layout", ["adaface", "arcface"])
def test_inverse_mapping_roundtrip(layout):
    ours = perturb_(IResNet(DEPTH, layout), seed=3)
    native = ours.net.state_dict()
    exported = from_native(native, layout=layout, depth=DEPTH)
    ref_keys = set((AdaFaceRef if layout == "adaface" else ArcfaceRef)(DEPTH).state_dict())
    assert set(exported) == ref_keys  # the export is in the real published layout
    if layout == "adaface":
        assert not set(exported) & set(native)  # the mapping is not the identity
    loaded = build_backbone(f"ir{DEPTH}", weights=exported)
    assert loaded.variant == layout
    _assert_holds(loaded, native)  # every perturbed tensor came back to its own place


def test_missing_and_unexpected_keys_are_named():
    state = AdaFaceRef(DEPTH).state_dict()
    for k in ["body.3.res_layer.1.weight", "output_layer.3.bias", "input_layer.2.weight"]:
        state.pop(k)
    state["body.3.res_layer.9.weight"] = torch.zeros(3)
    state["output_layer.7.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        build_backbone(f"ir{DEPTH}", weights=state)
    msg = str(info.value)
    assert "3 missing keys" in msg and "2 unexpected keys" in msg
    for name in ["layer2.1.conv1.weight", "fc.bias", "prelu.weight", "body.3.res_layer.9.weight", "output_layer.7.weight"]:
        assert name in msg, msg


def test_many_missing_keys_are_summarised():
    state = ArcfaceRef(DEPTH).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.")}
    with pytest.raises(CheckpointError, match=r"\d+ missing keys \(layer3\.0\..*, \.\.\. \d+ more\)"):
        build_backbone(f"ir{DEPTH}", weights=state)


def test_shape_mismatch_is_named():
    state = ArcfaceRef(DEPTH).state_dict()
    state["fc.weight"] = torch.zeros(128, 512 * 49)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches \(fc.weight: model \(512, 25088\), file \(128, 25088\)\)"):
        build_backbone(f"ir{DEPTH}", weights=state)


def test_wrong_depth_and_foreign_layout():
    fake_ir50 = {f"layer{s + 1}.{k}.bn1.weight": torch.zeros(1) for s, n in enumerate(STAGE_BLOCKS[50]) for k in range(n)}
    with pytest.raises(CheckpointError, match="the weights are an ir50 .arcface layout., but ir18 was requested"):
        build_backbone("ir18", weights=fake_ir50)
    with pytest.raises(CheckpointError, match="not an IR-ResNet state dict"):
        build_backbone("ir18", weights={"encoder.weight": torch.zeros(1)})


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00\x01 not a torch file")
    with pytest.raises(CheckpointError, match="not a torch file"):
        read_state_dict(tmp_path / "junk.pth")

    torch.save({"state_dict": {}, "obj": PickledThing()}, tmp_path / "pickled.pth", pickle_module=pickle)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(tmp_path / "pickled.pth")
    torch.save({"a": 1}, tmp_path / "notsd.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "notsd.pth")
