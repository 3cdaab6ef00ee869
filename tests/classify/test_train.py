import json

import cv2
import numpy as np
import pytest

from occtool.classify.config import ClassifyTrainConfig
from occtool.classify.train import train_classifier
from occtool.errors import ConfigError, DataError

from ..conftest import shared_or_skip


def _class_tree(root, people=5, per_class=3, size=112):
    """none: a smooth random gradient; opaque: + a solid dark block; transparent: + a 50% white veil."""
    rng = np.random.default_rng(0)
    for p in range(people):
        for k in range(per_class):
            base = np.clip(rng.normal(120, 20) + np.linspace(-40, 40, size)[None, :, None] + rng.normal(0, 8, (size, size, 3)), 0, 255)
            y, x = rng.integers(10, 50, 2)
            opaque = base.copy()
            opaque[y: y + 50, x: x + 50] = 15
            transparent = base.copy()
            transparent[y: y + 50, x: x + 50] = 0.5 * transparent[y: y + 50, x: x + 50] + 0.5 * 255
            for cls, img in (("none", base), ("opaque", opaque), ("transparent", transparent)):
                (root / cls).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / cls / f"p{p}.{k}.png"), img.astype(np.uint8))
    return root


def test_short_fixed_seed_run_lowers_the_loss(tmp_path):
    data = _class_tree(tmp_path / "data")
    cfg = ClassifyTrainConfig(data=str(data), val_holdout_people=0, val_people=["p4"], test_people=["p0"],
                              arch="mobilenet_v3_small", backbone_weights="none", epochs=3, patience=3, batch_size=12, lr=1e-3, seed=0)
    metrics = train_classifier(cfg, tmp_path / "run")
    losses = [h["train_loss"] for h in metrics["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert metrics["data"]["validation"] == {"none": 3, "opaque": 3, "transparent": 3}
    assert metrics["data"]["test"] == {"none": 3, "opaque": 3, "transparent": 3}
    assert (metrics["data"]["train_identities"], metrics["data"]["validation_identities"], metrics["data"]["test_identities"]) == (3, 1, 1)
    for part in ("validation", "test"):
        rep = metrics[part]
        assert rep["n"] == 9 and np.array(rep["confusion"]).sum() == 9 and np.array(rep["confusion"]).sum(1).tolist() == [3, 3, 3]
        assert {c: v["support"] for c, v in rep["per_class"].items()} == {"none": 3, "opaque": 3, "transparent": 3}
        assert rep["accuracy"] == pytest.approx(np.trace(rep["confusion"]) / 9)
    for name in ("model.pt", "checkpoint.pt", "history.csv", "metrics.json"):
        assert (tmp_path / "run" / name).is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 3


def test_frozen_trunk_resume_continues_exactly(tmp_path):
    shared_or_skip("weights", "mobilefacenet")
    data = _class_tree(tmp_path / "data", people=3, per_class=2)
    base = dict(data=str(data), val_holdout_people=1, val_seed=3, arch="mfn_head", batch_size=4, patience=10, seed=1)
    straight = train_classifier(ClassifyTrainConfig(epochs=3, **base), tmp_path / "a")
    train_classifier(ClassifyTrainConfig(epochs=2, **base), tmp_path / "b")
    resumed = train_classifier(ClassifyTrainConfig(epochs=3, **base), tmp_path / "b", resume=True)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in straight["history"]], abs=1e-5)
    assert resumed["history"][-1]["val_accuracy"] == straight["history"][-1]["val_accuracy"]


def test_bad_training_data_and_config(tmp_path):
    data = _class_tree(tmp_path / "data", people=2, per_class=1)
    with pytest.raises(DataError, match="no validation faces"):
        train_classifier(ClassifyTrainConfig(data=str(data), val_holdout_people=0, arch="mobilenet_v3_small"), tmp_path / "r1")
    with pytest.raises(DataError, match="val_holdout_people: 200 validation people asked for, the training side has only 2"):
        train_classifier(ClassifyTrainConfig(data=str(data), arch="mobilenet_v3_small"), tmp_path / "r1b")
    with pytest.raises(DataError, match="no training faces"):
        train_classifier(ClassifyTrainConfig(data=str(data), val_holdout_people=1, test_people=["p0"]), tmp_path / "r1c")
    with pytest.raises(ConfigError, match="val_holdout_people"):
        ClassifyTrainConfig(val_holdout_people=-1)
    with pytest.raises(DataError, match="not found"):
        train_classifier(ClassifyTrainConfig(data=str(tmp_path / "nope")), tmp_path / "r2")
    with pytest.raises(ConfigError, match="unknown classifier"):
        train_classifier(ClassifyTrainConfig(data=str(data), val_holdout_people=1, arch="vgg"), tmp_path / "r3")
    with pytest.raises(ConfigError, match="lr"):
        ClassifyTrainConfig(lr=0)


def test_cosine_schedule_and_feature_cache_reuse(tmp_path):
    from occtool.classify.train import epoch_lr

    cfg = ClassifyTrainConfig(lr=1e-3, epochs=5, lr_schedule="cosine")
    lrs = [epoch_lr(cfg, e) for e in range(1, 6)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5) and lrs == sorted(lrs, reverse=True)
    assert epoch_lr(ClassifyTrainConfig(lr=2e-3), 7) == 2e-3
    shared_or_skip("weights", "mobilefacenet")
    data = _class_tree(tmp_path / "data", people=3, per_class=1)
    base = dict(data=str(data), val_holdout_people=0, val_people=["p2"], test_people=["p0"], arch="mfn_head", batch_size=4,
                epochs=2, cache_dir=str(tmp_path / "cache"))
    first = train_classifier(ClassifyTrainConfig(**base), tmp_path / "a")
    assert len(list((tmp_path / "cache").glob("classify-features-*.pt"))) == 2  # training side, test people
    second = train_classifier(ClassifyTrainConfig(**base), tmp_path / "b")
    assert second["history"][-1]["train_loss"] == pytest.approx(first["history"][-1]["train_loss"], abs=1e-6)
    assert second["test"] == first["test"] and second["validation"] == first["validation"]
    # another validation split of the same data reuses the same cache files
    train_classifier(ClassifyTrainConfig(**{**base, "val_people": ["p1"]}), tmp_path / "c")
    assert len(list((tmp_path / "cache").glob("classify-features-*.pt"))) == 2
