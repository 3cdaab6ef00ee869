"""Classification metrics (pure numpy): confusion matrix, per-class precision / recall / F1,
accuracy and a JSON-ready report. Labels are integer class indices 0..K-1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from occtool.errors import ShapeError


def _labels(y, name: str, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ShapeError(f"{name}: expected a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ShapeError(f"{name}: class indices must lie in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """[K, K] int64 counts, rows = true class, columns = predicted class (sklearn's layout)."""
    t, p = _labels(y_true, "y_true", n_classes), _labels(y_pred, "y_pred", n_classes)
    if t.shape != p.shape:
        raise ShapeError(f"y_true and y_pred: expected the same length, got {t.shape} and {p.shape}")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(cm: np.ndarray) -> float:
    """Share of correct predictions (trace / total); nan for an empty matrix."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision (column-wise), recall (row-wise) and F1, each [K]; 0 where undefined
    (no predictions / no samples of the class), as sklearn with zero_division=0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def classification_report(y_true, y_pred, class_names: Sequence[str]) -> dict:
    """accuracy, n, confusion (rows true, cols predicted, as nested lists) and per class
    precision / recall / f1 / support, ready for metrics.json."""
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, k)
    precision, recall, f1 = precision_recall_f1(cm)
    return {
        "n": int(cm.sum()),
        "accuracy": round(accuracy(cm), 6) if cm.sum() else None,
        "classes": list(class_names),
        "confusion": cm.tolist(),
        "per_class": {
            name: {"precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
                   "f1": round(float(f1[i]), 6), "support": int(cm[i].sum())}
            for i, name in enumerate(class_names)
        },
    }


def format_confusion(cm, class_names: Sequence[str]) -> str:
    """A small text table (rows true, columns predicted) for logs and READMEs."""
    cm = np.asarray(cm)
    width = max(8, *(len(n) for n in class_names)) + 1
    lines = ["true \\ pred".ljust(width + 2) + "".join(n.rjust(width) for n in class_names)]
    for i, name in enumerate(class_names):
        lines.append(name.ljust(width + 2) + "".join(str(int(v)).rjust(width) for v in cm[i]))
    return "\n".join(lines)
