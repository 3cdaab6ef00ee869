import numpy as np
import pytest
import torch
from torch import nn

from occtool.classify.export import export_onnx, onnx_session, torch_probabilities
from occtool.classify.models import OcclusionClassifier
from occtool.classify.predict import OnnxPredictor, TorchPredictor
from occtool.errors import ShapeError


def _tiny() -> OcclusionClassifier:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = OcclusionClassifier(arch="tiny", trunk=trunk, head=nn.Linear(4, 3), frozen_trunk=False)
    with torch.no_grad():  # non-trivial BN statistics
        model.trunk[1].running_mean.uniform_(-0.2, 0.2)
        model.trunk[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_export_round_trip_with_a_dynamic_batch(tmp_path):
    model = _tiny()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, 3, 224, 224)).astype(np.float32)
    result = export_onnx(model, tmp_path / "tiny.onnx", check_inputs=x)
    assert result["max_abs_prob_diff"] < 1e-4 and result["argmax_agree"] == 1.0 and result["n"] == 5
    onnx_pred, torch_pred = OnnxPredictor(onnx_session(tmp_path / "tiny.onnx")), TorchPredictor(model)
    for batch in (1, 7):  # other batch sizes than the export's dummy and the check's
        xb = rng.uniform(-1, 1, (batch, 3, 224, 224)).astype(np.float32)
        p = onnx_pred.probabilities(xb)
        assert p.shape == (batch, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
        assert np.abs(p - torch_pred.probabilities(xb)).max() < 1e-4
    assert np.allclose(torch_probabilities(model, x).sum(1), 1, atol=1e-6)


def test_export_needs_a_batch_of_real_shape(tmp_path):
    with pytest.raises(ShapeError):
        export_onnx(_tiny(), tmp_path / "t.onnx", check_inputs=np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(ShapeError):
        export_onnx(_tiny(), tmp_path / "t.onnx", check_inputs=np.zeros((2, 3, 112, 112), np.float32))
    assert not (tmp_path / "t.onnx").exists()
