import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix as sk_confusion, precision_recall_fscore_support

from occtool.errors import ShapeError
from occtool.evaluation.classification import (
    accuracy, classification_report, confusion_matrix, format_confusion, precision_recall_f1,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 3, 200))
    if seed == 2:
        y_pred[y_pred == 2] = 1  # a class never predicted: precision 0 (zero_division=0)
    cm = confusion_matrix(y_true, y_pred, 3)
    assert (cm == sk_confusion(y_true, y_pred, labels=[0, 1, 2])).all()
    assert accuracy(cm) == pytest.approx(accuracy_score(y_true, y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    ours = precision_recall_f1(cm)
    assert np.allclose(ours[0], p) and np.allclose(ours[1], r) and np.allclose(ours[2], f)


def test_report_layout():
    rep = classification_report(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), ["none", "opaque", "transparent"])
    assert rep["n"] == 4 and rep["accuracy"] == 0.75
    assert rep["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert rep["per_class"]["none"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6), "support": 2}
    assert rep["per_class"]["opaque"]["precision"] == 0.5
    assert "transparent" in format_confusion(rep["confusion"], rep["classes"])


def test_bad_labels_are_errors():
    with pytest.raises(ShapeError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ShapeError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(ShapeError):
        confusion_matrix(np.array([0.5]), np.array([0]), 3)
