"""MobileFaceNet: the shipped weights load strictly and equal the shipped ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from occtool.data.images import read_image_rgb
from occtool.errors import CheckpointError
from occtool.models import build_backbone, preprocess
from occtool.models.weights import read_state_dict


def _lfw_pairs(lfw: Path, n: int):
    lines = (lfw / "pairs.txt").read_text().splitlines()
    per_fold = int(lines[0].split()[1])
    same = [l.split() for l in lines[1 : 1 + per_fold]][:n]
    diff = [l.split() for l in lines[1 + per_fold : 1 + 2 * per_fold]][:n]

    def path(name, i):
        return lfw / "images" / name / f"{name}_{int(i):04d}.jpg"

    return ([(path(a, i), path(a, j)) for a, i, j in same], [(path(a, i), path(b, j)) for a, i, b, j in diff])


@pytest.fixture
def mfn(mobilefacenet_dir):
    return build_backbone("mobilefacenet", weights=mobilefacenet_dir / "mobilefacenet.pt").eval()


def test_equals_shipped_onnx(mfn, mobilefacenet_dir, lfw_aligned):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(mobilefacenet_dir / "MobileFaceNet.onnx"), providers=["CPUExecutionProvider"])
    same, diff = _lfw_pairs(lfw_aligned, 3)
    paths = [p for pair in same + diff for p in pair]
    images = np.stack([read_image_rgb(p) for p in paths])
    x = preprocess(images, mfn.input_spec)
    with torch.no_grad():
        raw = mfn.net(x).numpy()
        out = mfn(x)
    onnx_raw = np.concatenate([sess.run(None, {"input0": x[i : i + 1].numpy()})[0] for i in range(len(x))])
    assert onnx_raw.shape == raw.shape == (len(paths), 128)
    assert np.abs(onnx_raw - raw).max() < 1e-4
    onnx_emb = onnx_raw / np.linalg.norm(onnx_raw, axis=1, keepdims=True)
    assert np.abs(onnx_emb - out.embedding.numpy()).max() < 1e-4
    np.testing.assert_allclose(out.norm.numpy()[:, 0], np.linalg.norm(onnx_raw, axis=1), rtol=1e-4)


def test_same_person_closer_than_different(mfn, lfw_aligned):
    same, diff = _lfw_pairs(lfw_aligned, 6)

    pairs = same + diff
    x = preprocess(np.stack([read_image_rgb(p) for pair in pairs for p in pair]), mfn.input_spec)
    with torch.no_grad():
        e = mfn(x).embedding.view(len(pairs), 2, -1)
    cos = (e[:, 0] * e[:, 1]).sum(1).tolist()
    same_cos, diff_cos = cos[: len(same)], cos[len(same) :]
    assert min(same_cos) > max(diff_cos), (same_cos, diff_cos)
    assert np.mean(same_cos) > 0.5 > np.mean(diff_cos) + 0.3


def test_feature_map_is_conv2_output(mfn):
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        out = mfn(x)
        fm = mfn.net.conv2(mfn.net.features(mfn.net.dw_conv(mfn.net.conv1(x))))
    assert out.feature_map.shape == (2, 512, 7, 7)
    torch.testing.assert_close(out.feature_map, fm)
    assert float(out.feature_map.min()) >= 0 and float(out.feature_map.max()) <= 6  # ReLU6


def test_strict_load_names_missing_and_unexpected(mobilefacenet_dir):
    state = read_state_dict(mobilefacenet_dir / "mobilefacenet.pt")
    assert len(state) == 307
    state.pop("conv3.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        build_backbone("mobilefacenet", weights=state)
    msg = str(info.value)
    assert "1 missing keys (conv3.bias)" in msg and "1 unexpected keys (extra.weight)" in msg
