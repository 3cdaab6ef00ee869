"""Occlusion-type classifier (DESIGN piece 7): none / opaque / transparent, and routing.

- `geometry`: face box + 30% margin, clipped, 224x224, (x/255 - 0.5) / 0.5; aligned crops use
  the template face box (so the crop is the whole aligned image).
- `models`: `create_classifier(name)`, `list_classifiers()` (mfn_ms_head, mfn_head, mobilenet_v3_small, resnet18).
- `data`: augment's manifest or a class tree; `split_samples`: training / validation / test people.
- `train`: `train_classifier` (early stopping, checkpoint, resume).
- `checkpoint`: `save_classifier` / `load_classifier` (weights_only-safe).
- `export`: `export_onnx` (dynamic batch, checked against PyTorch).
- `predict`: `load_predictor` (.pt or .onnx), `iter_frames` (images, folders, videos), `predict_frames`.
- `routing`: classes -> routes with a confidence fallback; the routing report (time estimates).
- `evaluate`: `evaluate_samples` (accuracy, confusion matrix on labelled faces through predict's path).
"""

from occtool.classify.geometry import INPUT_SIZE, MARGIN, TEMPLATE_FACE_BOX_112, crop_face, grown_box, template_face_box, to_input
from occtool.classify.models import CLASSES, OcclusionClassifier, create_classifier, list_classifiers

__all__ = [
    "CLASSES",
    "INPUT_SIZE",
    "MARGIN",
    "OcclusionClassifier",
    "TEMPLATE_FACE_BOX_112",
    "create_classifier",
    "crop_face",
    "grown_box",
    "list_classifiers",
    "template_face_box",
    "to_input",
]
