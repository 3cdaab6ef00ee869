"""Accuracy of a classifier on labelled faces (a class tree or augment's manifest), through the
same boxes -> crop -> classify path as `predict`. One face per image: the first box (the
detector's best); an image where no face is found is counted apart, not scored."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from occtool.classify.config import PredictConfig
from occtool.classify.data import Sample, class_counts
from occtool.classify.models import CLASSES
from occtool.classify.predict import BoxSource, Frame, Predictor, predict_frames
from occtool.progress import ProgressFn


class _FirstBox(BoxSource):
    """The first box of another source (one face per image)."""

    def __init__(self, inner: BoxSource) -> None:
        self.inner = inner

    @property
    def seconds(self) -> float:  # type: ignore[override]
        return self.inner.seconds

    def boxes(self, frame: Frame):
        return self.inner.boxes(frame)[:1]


def evaluate_samples(samples: Sequence[Sample], predictor: Predictor, boxes: BoxSource, cfg: PredictConfig,
                     *, progress: ProgressFn = None) -> tuple[dict, list[dict]]:
    """(metrics, per-face rows with "label" added): classification_report over the scored faces,
    plus the routing report, the class counts and the images without a face."""
    from occtool.data.images import read_image_rgb
    from occtool.evaluation.classification import classification_report

    first = _FirstBox(boxes)
    frames = (Frame(str(s.path), 0, read_image_rgb(s.path)) for s in samples)
    result = predict_frames(frames, predictor, first, cfg, progress=progress, total=len(samples))
    label_of = {str(s.path): s.label for s in samples}
    rows = [{**f, "label": CLASSES[label_of[f["source"]]]} for f in result.faces]
    y_true = np.array([CLASSES.index(r["label"]) for r in rows], np.int64)
    y_pred = np.array([CLASSES.index(r["class"]) for r in rows], np.int64)
    metrics = classification_report(y_true, y_pred, CLASSES)
    metrics["images"] = len(samples)
    metrics["images_without_face"] = len(samples) - len(rows)
    metrics["labels"] = class_counts(samples)
    metrics["routing"] = result.report
    return metrics, rows
