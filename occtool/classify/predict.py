"""Prediction: frames (images, folders, videos) -> face boxes -> crops -> classes -> routes.

`load_predictor(path)` reads a `.pt` classifier (PyTorch) or an exported `.onnx` (onnxruntime);
both give probabilities [B, 3]. Boxes come from a `BoxSource`: `FixedBox` (--bbox),
`BoxesFile` (--boxes), `WholeImage` (--whole-image: every image is one face crop; the template
box rule makes the crop the whole image, as in training) or `DetectorBoxes` (RetinaFace).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occtool.classify.config import PredictConfig
from occtool.classify.geometry import crop_face, grown_box, template_face_box, to_input
from occtool.classify.models import CLASSES
from occtool.classify.routing import frame_route, route_face, routing_report
from occtool.errors import ConfigError, DataError
from occtool.progress import ProgressFn, report

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


# ----------------------------------------------------------------------------- classifiers


class Predictor:
    """probabilities(x float32 [B, 3, 224, 224]) -> float32 [B, 3]; `kind` is "torch" or "onnx"."""

    kind = ""

    def probabilities(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class TorchPredictor(Predictor):
    kind = "torch"

    def __init__(self, model) -> None:
        self.model = model.eval()

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from occtool.classify.export import torch_probabilities

        return torch_probabilities(self.model, x)


class OnnxPredictor(Predictor):
    kind = "onnx"

    def __init__(self, session) -> None:
        self.session = session

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from occtool.classify.export import INPUT_NAME, OUTPUT_NAME

        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, np.float32)})[0]


def load_predictor(path: str | Path, *, threads: int = 0, runtime: str = "auto",
                   graph_dir: str | Path | None = None) -> Predictor:
    """A `.onnx` file -> ONNX Runtime; anything else -> an occtool classifier checkpoint, run in
    PyTorch (runtime torch) or exported and run in ONNX Runtime (onnxruntime, auto: see
    `occtool.classify.runtime`). threads: intra-op threads (0: OMP_NUM_THREADS, else the cores)."""
    from occtool.runtime import resolve_runtime
    from occtool.runtime.threads import default_threads

    path = Path(path)
    if not path.is_file():
        raise DataError(f"model not found: {path}")
    used = resolve_runtime(runtime, "cpu")
    n_threads = int(threads) or default_threads()
    if path.suffix.lower() == ".onnx":
        if runtime == "torch":
            raise ConfigError(f"--runtime torch: {path} is an ONNX graph, it runs in ONNX Runtime "
                              "(use --runtime onnxruntime or auto, or give the model.pt checkpoint)")
        from occtool.classify.export import onnx_session

        return OnnxPredictor(onnx_session(path, threads=n_threads))
    from occtool.classify.checkpoint import load_classifier

    model = load_classifier(path).model
    if used == "torch":
        return TorchPredictor(model)
    from occtool.classify.runtime import GraphPredictor

    return GraphPredictor(model, path, threads=n_threads, graph_dir=graph_dir, strict=runtime == "onnxruntime")


# ----------------------------------------------------------------------------- frames


@dataclass
class Frame:
    source: str  # the input path as given (folders: the image's path)
    index: int  # frame number in a video, 0 for an image
    image: np.ndarray  # uint8 RGB [H, W, 3]
    weight: int = 1  # frames this one stands for (--every N: itself and the skipped ones after it)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _video_frames(path: Path, every: int) -> Iterator[Frame]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"video does not open: {path}")
    pending: Frame | None = None
    index = 0
    try:
        while True:
            if index % every == 0:
                ok, bgr = cap.read()
                if not ok:
                    break
                if pending is not None:
                    yield pending
                pending = Frame(str(path), index, np.ascontiguousarray(bgr[:, :, ::-1]), 1)
            else:
                if not cap.grab():
                    break
                pending.weight += 1
            index += 1
    finally:
        cap.release()
    if pending is None:
        raise DataError(f"video does not decode (no frame could be read): {path}")
    yield pending


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Images, videos and folders (their images and videos, recursively, sorted); DataError for
    a missing path or an empty folder."""
    from occtool.data.images import _looks_like_image

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and (is_video(q) or _looks_like_image(q)))
            if not found:
                raise DataError(f"no images or videos in folder: {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"input not found: {p}")
    if not out:
        raise DataError("no input given: name images, folders or videos")
    return out


def check_inputs(paths: Sequence[Path]) -> None:
    """Fail early (before any output is written) on an image whose header does not decode or a
    video whose first frame cannot be read."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    for p in paths:
        if is_video(p):
            cap = cv2.VideoCapture(str(p))
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
            if not ok:
                raise DataError(f"video does not decode (no frame could be read): {p}")
            continue
        try:
            with Image.open(p) as img:
                img.size  # noqa: B018 - the header is parsed
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"image does not decode: {p} ({exc.__class__.__name__})") from None


def iter_frames(paths: Sequence[Path], *, every: int = 1) -> Iterator[Frame]:
    from occtool.data.images import read_image_rgb

    for p in paths:
        if is_video(p):
            yield from _video_frames(p, every)
        else:
            yield Frame(str(p), 0, read_image_rgb(p), 1)


# ----------------------------------------------------------------------------- boxes


def parse_bbox(text: str) -> np.ndarray:
    """'x1,y1,x2,y2' (pixels) -> float [4]; ConfigError unless 4 finite numbers with x2 > x1, y2 > y1."""
    try:
        box = np.array([float(v) for v in text.replace(" ", "").split(",")], dtype=np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise ConfigError(f"--bbox {text!r}: expected x1,y1,x2,y2 in pixels with x2 > x1 and y2 > y1")
    return box


class BoxSource:
    """boxes(frame) -> list of boxes [4] (x1, y1, x2, y2); `seconds` = time spent finding them."""

    seconds = 0.0

    def boxes(self, frame: Frame) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


class FixedBox(BoxSource):
    def __init__(self, box: np.ndarray) -> None:
        self.box = np.asarray(box, np.float64)

    def boxes(self, frame: Frame) -> list[np.ndarray]:
        return [self.box]


class WholeImage(BoxSource):
    """Every image is one aligned / tight face crop: the template face box (crop = whole image)."""

    def boxes(self, frame: Frame) -> list[np.ndarray]:
        return [template_face_box(frame.image.shape[:2])]


class BoxesFile(BoxSource):
    """CSV with a header: source,frame,x1,y1,x2,y2 (frame optional, default 0). `source` is the
    input path as given or its file name; frames without a row have no face."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"boxes file not found: {path}")
        self.table: dict[tuple[str, int], list[np.ndarray]] = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"source", "x1", "y1", "x2", "y2"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise DataError(f"boxes file {path}: expected a header with source,frame,x1,y1,x2,y2")
            for line, row in enumerate(reader, 2):
                try:
                    key = (row["source"], int(row.get("frame") or 0))
                    box = parse_bbox(",".join(row[k] for k in ("x1", "y1", "x2", "y2")))
                except (ValueError, ConfigError):
                    raise DataError(f"boxes file {path}: line {line}: expected a frame number and x1 < x2, y1 < y2") from None
                self.table.setdefault(key, []).append(box)

    def boxes(self, frame: Frame) -> list[np.ndarray]:
        return self.table.get((frame.source, frame.index)) or self.table.get((Path(frame.source).name, frame.index), [])


class DetectorBoxes(BoxSource):
    """occtool's RetinaFace; faces above score_threshold, highest score first (max_faces: 0 = all);
    runtime torch | onnxruntime | auto and threads as `RetinaFaceDetector`'s (threads 0: the default)."""

    def __init__(self, *, score_threshold: float = 0.5, max_faces: int = 0, weights=None, runtime: str = "torch",
                 threads: int = 0, graph_dir=None) -> None:
        from occtool.detect import RetinaFaceDetector
        from occtool.runtime.threads import default_threads

        self.detector = RetinaFaceDetector(weights=weights, score_threshold=score_threshold, runtime=runtime,
                                           threads=int(threads) or default_threads(), graph_dir=graph_dir)
        self.max_faces = max_faces
        self.seconds = 0.0

    @property
    def runtime(self) -> str:
        return self.detector.runtime

    def boxes(self, frame: Frame) -> list[np.ndarray]:
        t0 = time.perf_counter()
        found = self.detector.detect(frame.image)
        self.seconds += time.perf_counter() - t0
        found = found[: self.max_faces] if self.max_faces else found
        return [d.box.astype(np.float64) for d in found]


# ----------------------------------------------------------------------------- the loop


@dataclass
class PredictResult:
    faces: list[dict]  # per face: source, frame, face, x1..y2 (box), crop_* (grown box), class, confidence, p_*, route, fallback
    frames: list[dict]  # per classified frame: source, frame, faces, route, weight
    report: dict  # routing_report(...)


def _face_row(frame: Frame, k: int, box: np.ndarray, margin: float) -> dict:
    cx1, cy1, cx2, cy2 = grown_box(box, frame.image.shape[:2], margin)
    row = {"source": frame.source, "frame": frame.index, "face": k}
    row.update({n: round(float(v), 2) for n, v in zip(("x1", "y1", "x2", "y2"), box)})
    row.update(crop_x1=cx1, crop_y1=cy1, crop_x2=cx2, crop_y2=cy2)
    return row


def predict_frames(
    frames: Iterator[Frame],
    predictor: Predictor,
    boxes: BoxSource,
    cfg: PredictConfig,
    *,
    progress: ProgressFn = None,
    total: int = 0,
) -> PredictResult:
    """Classify every face of every frame in batches of cfg.batch_size, route faces and frames,
    and build the routing report (classifier time = the predictor calls only)."""
    faces: list[dict] = []
    frame_rows: list[dict] = []
    pending: list[tuple[dict, np.ndarray]] = []
    clock = {"classifier": 0.0}

    def flush() -> None:
        if not pending:
            return
        x = to_input(np.stack([c for _, c in pending]))
        t0 = time.perf_counter()
        probs = predictor.probabilities(x)
        clock["classifier"] += time.perf_counter() - t0
        for (row, _), p in zip(pending, probs):
            k = int(np.argmax(p))
            row.update({"class": CLASSES[k], "confidence": round(float(p[k]), 6)})
            row.update({f"p_{c}": round(float(v), 6) for c, v in zip(CLASSES, p)})
            row["route"], row["fallback"] = route_face(CLASSES[k], float(p[k]), cfg)
        pending.clear()

    for done, frame in enumerate(frames, 1):
        found = boxes.boxes(frame)
        frame_rows.append({"source": frame.source, "frame": frame.index, "faces": len(found), "weight": frame.weight,
                           "first_face": len(faces)})
        for k, box in enumerate(found):
            row = _face_row(frame, k, box, cfg.margin)
            faces.append(row)
            pending.append((row, crop_face(frame.image, box, margin=cfg.margin)))
            if len(pending) >= cfg.batch_size:
                flush()
        report(progress, done, max(total, done))
    flush()
    for fr in frame_rows:
        first = fr.pop("first_face")
        fr["route"] = frame_route([f["route"] for f in faces[first: first + fr["faces"]]], cfg.costs)
    rep = routing_report(faces, frame_rows, cfg=cfg, classifier_seconds=clock["classifier"], detector_seconds=boxes.seconds)
    rep["model_kind"] = predictor.kind
    rep["runtime"] = {"classifier": "onnxruntime" if predictor.kind == "onnx" else "torch",
                      "detector": getattr(boxes, "runtime", None)}
    return PredictResult(faces=faces, frames=frame_rows, report=rep)


def count_frames(paths: Sequence[Path], every: int) -> int:
    """Frames that will be classified (videos: from their frame count; 0 when unknown)."""
    import cv2

    total = 0
    for p in paths:
        if is_video(p):
            cap = cv2.VideoCapture(str(p))
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.release()
            total += (n + every - 1) // every
        else:
            total += 1
    return total


def write_predictions(out: Path, result: PredictResult) -> None:
    """predictions.csv and predictions.jsonl (one row per face), frames.csv (one row per frame)."""
    import io
    import json

    from occtool.io import atomic_write_text

    face_cols = ["source", "frame", "face", "x1", "y1", "x2", "y2", "crop_x1", "crop_y1", "crop_x2", "crop_y2",
                 "class", "confidence"] + [f"p_{c}" for c in CLASSES] + ["route", "fallback"]
    for name, rows, cols in (("predictions.csv", result.faces, face_cols),
                             ("frames.csv", result.frames, ["source", "frame", "faces", "route", "weight"])):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out / name, buf.getvalue())
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(r) + "\n" for r in result.faces))


def format_report(rep: dict) -> str:
    """The routing report as a few lines of text (the seed note's Pipeline Usage Report)."""
    lines = [f"faces: {rep['faces']['total']} ({rep['faces']['fallback']} below min confidence -> fallback); "
             f"frames: {rep['frames']['total']} ({rep['frames']['without_face']} without a face)"]
    costs = rep["estimate"]["costs_s_per_frame"]
    for route, share in rep["frames"]["per_route"].items():
        faces = rep["faces"]["per_route"][route]
        lines.append(f"  {route:10s}: {share['count']:6d} frames ({share['percent']:5.1f}%), {faces['count']:6d} faces "
                     f"({faces['percent']:5.1f}%) | {costs[route]:.2f} s/frame")
    t, e = rep["timing"], rep["estimate"]
    det = f", detector {t['detector_ms_per_frame']:.1f} ms/frame" if t["detector_ms_per_frame"] else ""
    lines.append(f"classifier ({rep.get('model_kind', '?')}): {t['classifier_ms_per_face'] or 0:.2f} ms/face{det}")
    lines.append(f"estimated: routed {e['total_s']:.1f} s (paths {e['routed_s']:.1f} s + classifier {e['classifier_s']:.2f} s) "
                 f"vs always slow {e['always_slow_s']:.1f} s: {e['speedup'] or 0:.2f}x faster")
    return "\n".join(lines)
