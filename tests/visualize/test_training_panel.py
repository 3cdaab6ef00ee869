import numpy as np
import torch
from PIL import Image

from occtool.visualize import predict_visibility, save_training_panel, training_panel


def _model():
    from occtool.models import FaceModel, build_backbone

    torch.manual_seed(0)
    return FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=8)


def test_training_panel_restores_mode_and_draws_truth(tmp_path):
    model = _model().train()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    gt = np.ones((3, 112, 112), np.float32)
    gt[:, 64:] = 0.0
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    pred = predict_visibility(model, images)
    assert pred.shape == (3, 7, 7) and model.training  # eval for the call only
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())  # BatchNorm statistics untouched
    assert ((pred >= 0) & (pred <= 1)).all()
    fig = training_panel(model.train(), images, gt, title="epoch 3", names=["a", "b", "c"])
    assert model.training
    path = save_training_panel(tmp_path / "panel.png", model, images, gt, title="epoch 3")
    w, h = Image.open(path).size
    assert w > 4 * 224 and h > 3 * 224  # 3 rows of face | predicted | truth | disagreement
    texts = [t.get_text() for t in fig.texts + [t for ax in fig.axes for t in ax.texts]]
    assert "epoch 3" in texts and any(t.startswith("ground truth, mean 0.57") for t in texts)
    shown = [float(t.split()[-1]) for t in texts if t.startswith("predicted, mean")]
    np.testing.assert_allclose(shown, pred.mean(axis=(1, 2)), atol=0.006)
    # without truth: face | predicted only, narrower
    w2, _ = Image.open(save_training_panel(tmp_path / "p2.png", model, images[:1])).size
    assert w2 < w
