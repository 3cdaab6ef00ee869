"""Face detection with 5 landmarks (RetinaFace MobileNet-0.25 from the shared weights)."""

from occtool.detect.paths import default_weights
from occtool.detect.retinaface import Detection, RetinaFaceDetector, RetinaFaceNet, load_retinaface, make_priors

__all__ = ["Detection", "RetinaFaceDetector", "RetinaFaceNet", "default_weights", "load_retinaface", "make_priors"]
