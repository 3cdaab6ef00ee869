"""ONNX export: round trip on a tiny model and on MobileFaceNet (real faces), clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from occtool.cli.app import run
from occtool.models import Backbone, FaceModel, InputSpec
from occtool.models.export import (
    BACKBONE_OUTPUTS,
    FACE_OUTPUTS,
    STAGE_OUTPUT,
    ExportError,
    ExportGraph,
    check_onnx,
    export_onnx,
    read_metadata,
)
from occtool.runtime import make_session


class TinyBackbone(Backbone):
    """16x16 input -> [B, 8, 4, 4] feature map -> 6-d embedding (conv + BN + linear)."""

    name = "tiny"
    embedding_dim = 6
    feature_channels = 8
    feature_size = (4, 4)

    def __init__(self) -> None:
        super().__init__(input_spec=InputSpec(size_hw=(16, 16)))
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.BatchNorm2d(8), nn.PReLU(8))
        self.out = nn.Linear(8 * 16, 6)

    def features(self, x):
        return self.body(x)

    def embed_raw(self, fm):
        return self.out(fm.flatten(1))


class SvdBackbone(TinyBackbone):
    """An operator the ONNX exporter does not support."""

    def embed_raw(self, fm):
        return torch.linalg.svdvals(fm.flatten(2)).flatten(1)[:, :6]


class BranchyBackbone(TinyBackbone):
    """Data-dependent Python control flow: traced as a constant, so the graph is wrong on other inputs."""

    def features(self, x):
        fm = self.body(x)
        return fm * 2 if bool(x.mean() > 0) else fm


def _stats(model: nn.Module) -> nn.Module:
    with torch.no_grad():  # non-trivial BN statistics, so that a folded BN is checked too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("face", [False, True])
def test_round_trip_tiny(tmp_path, face):
    model = _stats(FaceModel(backbone=TinyBackbone(), hidden_channels=4, neck_channels=5) if face else TinyBackbone())
    path = export_onnx(model, tmp_path / "m.onnx")
    meta = read_metadata(path)
    assert meta["kind"] == ("face_model" if face else "backbone") and meta["backbone"] == "tiny"
    assert meta["outputs"] == list(FACE_OUTPUTS if face else BACKBONE_OUTPUTS) and meta["opset"] == 17
    assert InputSpec.from_dict(meta["input_spec"]) == model.input_spec
    x = torch.randn(5, 3, 16, 16)  # another batch size than the export's: the batch is dynamic
    diffs = check_onnx(model, path, x)
    assert set(diffs) == set(meta["outputs"]) and max(diffs.values()) < 1e-5
    got = make_session(path).run(None, {"input": x.numpy()})
    ref = ExportGraph(model)(x)
    shapes = [tuple(g.shape) for g in got]
    assert shapes == [tuple(r.shape) for r in ref]
    if face:
        assert shapes[3] == (5, 1, 4, 4) and shapes[4] == (5, 5, 4, 4)  # occlusion, neck match map


class SplitTiny(TinyBackbone):
    """A split body: stage map [B, 4, 4, 4] -> last stage (1x1 conv + BN + PReLU) -> [B, 8, 4, 4]."""

    stage_channels = 4

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8),
                                  nn.PReLU(8))

    def split_features(self, x):
        stage = self.body[:2](x)
        return stage, self.body[2:](stage)


def test_stage_output(tmp_path):
    model = _stats(SplitTiny())
    path = export_onnx(model, tmp_path / "m.onnx", stage=True)
    assert read_metadata(path)["outputs"] == [*BACKBONE_OUTPUTS, STAGE_OUTPUT]
    x = torch.randn(3, 3, 16, 16)
    diffs = check_onnx(model, path, x, stage=True)
    assert set(diffs) == {*BACKBONE_OUTPUTS, STAGE_OUTPUT} and max(diffs.values()) < 1e-5
    stage = make_session(path).run([STAGE_OUTPUT], {"input": x.numpy()})[0]
    with torch.no_grad():
        assert stage.shape == (3, 4, 4, 4) and np.abs(stage - model.split_features(x)[0].numpy()).max() < 1e-5
    with pytest.raises(ExportError, match="4 outputs, expected 3"):  # stage is part of the graph's contract
        check_onnx(model, path, x)
    with pytest.raises(ValueError, match="FaceModel"):
        export_onnx(FaceModel(backbone=TinyBackbone(), hidden_channels=4, neck_channels=5), tmp_path / "f.onnx",
                    stage=True)


def test_export_leaves_the_model_alone(tmp_path):
    model = _stats(TinyBackbone()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unsupported_operator_is_a_clear_error(tmp_path, capfd):
    with pytest.raises(ExportError, match="cannot export tiny to ONNX"):
        export_onnx(SvdBackbone().eval(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.iterdir())
    assert "Torch IR graph" not in capfd.readouterr().out  # the exporter's dump is silenced


def test_graph_that_disagrees_is_an_error(tmp_path):
    model = _stats(BranchyBackbone())
    path = export_onnx(model, tmp_path / "m.onnx")  # traced with zeros: mean 0, the "else" branch
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        check_onnx(model, path, torch.rand(3, 3, 16, 16) + 1.0)  # mean > 0: the other branch


def test_not_an_occtool_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="not a readable ONNX file"):
        read_metadata(tmp_path / "x.onnx")


def test_cli_export_mobilefacenet_on_real_faces(tmp_path, mobilefacenet_dir, tiny_tree, capsys):
    out = tmp_path / "mfn.onnx"
    assert run(["export", "--backbone", "mobilefacenet", "--check-root", str(tiny_tree), "--check-images", "4",
                "--out", str(out)]) == 0
    rep = json.loads((tmp_path / "mfn.onnx.json").read_text())
    assert rep["outputs"] == list(BACKBONE_OUTPUTS) and rep["opset"] == 17 and "faces of" in rep["checked_on"]
    assert all(d < 1e-4 for d in rep["max_abs_diff"].values())
    # loadable back: a fresh session, another batch size, the shipped network's embedding
    from occtool.models import build_backbone, default_weights

    bb = build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval()
    x = torch.randn(3, 3, 112, 112)
    emb = make_session(out).run(["embedding"], {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(emb - bb(x).embedding.numpy()).max() < 1e-4
    # the file exists now: refused without --force, one error line
    capsys.readouterr()
    assert run(["export", "--backbone", "mobilefacenet", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1


def test_cli_export_unknown_backbone(tmp_path, capsys):
    assert run(["export", "--backbone", "nope", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and not (tmp_path / "m.onnx").exists()
