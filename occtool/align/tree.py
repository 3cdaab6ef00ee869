"""`occtool align`: an identity tree of raw photos -> the same tree of aligned crops.

With ONNX Runtime (the CPU default) the work runs in this process: `workers` threads share one
detector (a one-thread session each call) and each decodes, detects, aligns and writes whole
images. With PyTorch it is spread over a process pool (forkserver); each worker builds its
detector once (pool initializer) and runs torch single-threaded. The parent collects one small
record per image and writes landmarks.csv, no_face.txt, unreadable.txt, metrics.json and
config.yaml.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np

from occtool.config import ConfigValueError, check_choice, check_device, check_range
from occtool.data.images import IMAGE_SUFFIXES, list_identity_tree
from occtool.errors import DataError, OcctoolError
from occtool.progress import ProgressFn, report


@dataclass
class AlignConfig:
    size: tuple[int, int] = (112, 112)  # output (height, width)
    score_threshold: float = 0.5  # detections below are ignored
    nms_iou: float = 0.4
    max_side: int = 1024  # larger images are downscaled for detection (0 = never)
    select: Literal["center", "all"] = "center"  # the face closest to the centre, or every face
    fallback: Literal["skip", "center"] = "skip"  # no face: skip, or write a centre crop (score 0)
    fallback_crop: float = 0.52  # centre-crop side as a fraction of the shorter image side
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 95
    workers: int = 2
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N
    weights: Optional[str] = None  # RetinaFace state dict; None = ../shared/weights/retinaface_mnet025
    runtime: str = "auto"  # torch | onnxruntime | auto (ONNX Runtime on the CPU; one thread per worker)

    def __post_init__(self) -> None:
        if min(self.size) < 16:
            raise ConfigValueError("size", "[height, width], both >= 16", list(self.size))
        check_range("score_threshold", self.score_threshold, lo=0.0, hi=1.0)
        check_range("nms_iou", self.nms_iou, lo=0.0, hi=1.0, lo_open=True)
        check_range("max_side", self.max_side, lo=0)
        check_range("fallback_crop", self.fallback_crop, lo=0.0, hi=1.0, lo_open=True)
        check_range("jpeg_quality", self.jpeg_quality, lo=1, hi=100)
        check_range("workers", self.workers, lo=1)
        check_device("device", self.device)
        check_choice("runtime", self.runtime, ("torch", "onnxruntime", "auto"))


@dataclass
class ImageResult:
    """One source image: status ok | fallback | no_face | unreadable | error (a processing
    failure, reported like an unreadable image) | init_error (the detector could not be built)."""

    source: str  # relative path in SRC
    status: str
    faces: int = 0  # detections above the threshold
    outputs: list[tuple[str, list[float], float]] = field(default_factory=list)  # (relpath in DST, 10 coords, score)
    message: str = ""
    scores: list[float] = field(default_factory=list)


def output_name(name: str, image_format: str, k: Optional[int] = None) -> str:
    """Output file name: keep the name when its suffix already matches the format, replace a
    known image suffix otherwise, append to anything else (`subject01.glasses` -> `.glasses.jpg`);
    `--all` inserts `_<k>` before the suffix."""
    ext = ".jpg" if image_format == "jpg" else ".png"
    p = Path(name)
    suffix = p.suffix.lower()
    matching = {".jpg", ".jpeg"} if image_format == "jpg" else {".png"}
    if suffix in matching:
        stem, ext = p.stem, p.suffix
    elif suffix in IMAGE_SUFFIXES:
        stem = p.stem
    else:
        stem = p.name
    return f"{stem}_{k}{ext}" if k is not None else f"{stem}{ext}"


# ----------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def _init_pool_worker(cfg: AlignConfig, out_root: str) -> None:
    """A pool worker leaves Ctrl-C to the parent (which stops the pool and says so once)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(cfg, out_root)


def _init_worker(cfg: AlignConfig, out_root: str) -> None:
    """Build the detector once per worker. A failure is kept and reported by `_process` (an
    exception here would make the pool respawn workers forever)."""
    _STATE["cfg"] = cfg
    _STATE["out"] = Path(out_root)
    try:
        import torch

        from occtool.align.aligner import FaceAligner
        from occtool.detect import RetinaFaceDetector
        from occtool.device import resolve_device

        torch.set_num_threads(1)
        detector = RetinaFaceDetector(
            weights=cfg.weights,
            score_threshold=cfg.score_threshold,
            nms_iou=cfg.nms_iou,
            max_side=cfg.max_side or None,
            device=resolve_device(cfg.device),
            runtime=cfg.runtime,
            threads=1,  # one per worker process: `workers` cores in all
        )
        _STATE["aligner"] = FaceAligner(detector, size_hw=tuple(cfg.size), select=cfg.select)
    except Exception as exc:  # noqa: BLE001
        _STATE["init_error"] = exc


def _encode(image_rgb: np.ndarray, image_format: str, quality: int) -> bytes:
    import cv2

    bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
    if image_format == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OcctoolError(f"could not encode a {image_format} image")
    return buf.tobytes()


def _read(task: tuple[str, str, str]):
    """(image RGB uint8, None, the detector's input) or (None, DataError, None) for a task's source
    file. In the prefetch thread, so the detector's resize and input conversion run there too."""
    from occtool.data.images import read_image_rgb

    try:
        image = read_image_rgb(task[0])
    except DataError as exc:
        return None, exc, None
    prepare = getattr(getattr(_STATE.get("aligner"), "detector", None), "prepare", None)
    try:
        return image, None, prepare(image) if prepare is not None else None
    except Exception:  # noqa: BLE001 - `_process` meets the same failure and reports it per image
        return image, None, None


def _process_chunk(tasks: list[tuple[str, str, str]]) -> list[ImageResult]:
    """Several images, each decoded while the one before it is detected, aligned and written."""
    from occtool.runtime.prefetch import prefetched

    return [_process(task, *loaded) for task, loaded in prefetched(_read, tasks)]


def _process(task: tuple[str, str, str], image=None, read_error: DataError | None = None,
             prepared=None) -> ImageResult:
    """One image (decoded here unless `image` or `read_error` is given; `prepared`: the detector's
    input made ahead by `_read`): detect, align, write."""
    from occtool.align.aligner import center_crop_face
    from occtool.io import atomic_write_bytes

    src, rel, out_name = task
    if "init_error" in _STATE:
        exc = _STATE["init_error"]
        return ImageResult(source=rel, status="init_error", message=str(exc) if isinstance(exc, OcctoolError) else f"{exc.__class__.__name__}: {exc}")
    cfg: AlignConfig = _STATE["cfg"]
    out_root: Path = _STATE["out"]
    if image is None and read_error is None:
        image, read_error, prepared = _read(task)
    if read_error is not None:
        return ImageResult(source=rel, status="unreadable", message=str(read_error))
    try:
        faces, detections = _STATE["aligner"].align(image, prepared=prepared)
        result = ImageResult(source=rel, status="ok", faces=len(detections), scores=[d.score for d in detections])
        if not faces:
            if cfg.fallback != "center":
                result.status = "no_face"
                return result
            faces = [center_crop_face(image, tuple(cfg.size), cfg.fallback_crop)]
            result.status = "fallback"
        rel_path = Path(rel)
        for k, face in enumerate(faces):
            name = _with_index(out_name, k if cfg.select == "all" else None)
            out_rel = (rel_path.parent / name).as_posix()
            atomic_write_bytes(out_root / out_rel, _encode(face.image, cfg.image_format, cfg.jpeg_quality))
            result.outputs.append((out_rel, [float(v) for v in face.landmarks.reshape(-1)], float(face.score)))
        return result
    except Exception as exc:  # noqa: BLE001 - one bad image must never stop the run
        return ImageResult(source=rel, status="error", message=f"{src}: {exc.__class__.__name__}: {exc}")


# ----------------------------------------------------------------------------- parent side


@dataclass
class AlignSummary:
    metrics: dict[str, Any]
    results: list[ImageResult]


def _checked(result: ImageResult) -> ImageResult:
    if result.status == "init_error":
        raise OcctoolError(f"the face detector could not be built: {result.message}")
    return result


def check_arguments(src: Path, out: Path, cfg: AlignConfig) -> None:
    """Refuse what cannot work before anything is written."""
    if not src.is_dir():
        raise DataError(f"data folder not found: {src}")
    if src.resolve() == out.resolve() or src.resolve() in out.resolve().parents:
        raise OcctoolError(f"--out {out} must not be SRC or inside it")
    # the values themselves are checked by AlignConfig; here what depends on the machine
    from occtool.detect.paths import resolve_weights
    from occtool.device import resolve_device

    from occtool.runtime import resolve_runtime

    resolve_weights(cfg.weights)
    resolve_runtime(cfg.runtime, resolve_device(cfg.device))  # CUDA asked for but absent: fail before anything is written


def _resolved_runtime(cfg: AlignConfig) -> str:
    from occtool.device import resolve_device
    from occtool.runtime import resolve_runtime

    return resolve_runtime(cfg.runtime, resolve_device(cfg.device))


def plan_output_names(relpaths: list[str], image_format: str) -> list[str]:
    """Output file name (before any `_<k>`) per source; when two sources of one identity would
    collide (`a.png` and `a.jpg` -> `a.jpg`), those keep their full name (`a.png.jpg`)."""
    names = [output_name(Path(r).name, image_format) for r in relpaths]
    keys = [f"{Path(r).parent.as_posix()}/{n.lower()}" for r, n in zip(relpaths, names)]
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    ext = ".jpg" if image_format == "jpg" else ".png"
    return [n if counts[k] == 1 else Path(r).name + ext for r, n, k in zip(relpaths, names, keys)]


def _with_index(name: str, k: Optional[int]) -> str:
    if k is None:
        return name
    p = Path(name)
    return f"{p.stem}_{k}{p.suffix}"


def _run_tasks(tasks, cfg: AlignConfig, out: Path, progress) -> tuple[list[ImageResult], Optional[float]]:
    """Every image through `_process` (in this process, or a pool of worker processes); returns the
    results and when the first one finished (start-up time)."""
    if cfg.workers == 1 or _resolved_runtime(cfg) == "onnxruntime":
        return _run_in_process(tasks, cfg, out, progress)
    results: list[ImageResult] = []
    first: Optional[float] = None
    total = len(tasks)
    # forkserver: the server imports torch/torchvision/cv2 once (slow imports) and forks the
    # workers from a clean process that never ran torch ops (no OpenMP/CUDA state to inherit).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["occtool.align.tree", "torch", "torchvision.ops", "cv2"])
    chunk = max(1, min(16, total // (cfg.workers * 8) or 1))
    chunks = [tasks[s : s + chunk] for s in range(0, total, chunk)]
    with ctx.Pool(cfg.workers, initializer=_init_pool_worker, initargs=(cfg, str(out))) as pool:
        for part in pool.imap_unordered(_process_chunk, chunks):  # a chunk decodes ahead within itself
            results.extend(_checked(res) for res in part)
            first = first or time.perf_counter()
            report(progress, len(results), total)
    return results, first


def _run_in_process(tasks, cfg: AlignConfig, out: Path, progress) -> tuple[list[ImageResult], Optional[float]]:
    """One detector in this process, torch single-threaded (the net is tiny, and two OpenMP threads
    on busy cores can be 30x slower than one). One worker: the next image decodes while this one
    runs. More (ONNX Runtime): `workers` threads, each decoding, detecting, aligning and writing
    whole images through the shared one-thread session (`occtool.runtime.parallel`: no process
    start-up, one graph, and 1.5x the images/s of one session with two intra-op threads)."""
    import contextlib

    import torch

    from occtool.runtime.parallel import ordered_map
    from occtool.runtime.prefetch import prefetched

    results: list[ImageResult] = []
    first: Optional[float] = None
    threads = torch.get_num_threads()
    _init_worker(cfg, str(out))
    if cfg.workers == 1:
        stream = ((task, _process(task, *loaded)) for task, loaded in prefetched(_read, tasks))
    else:
        stream = ordered_map(_process, tasks, workers=cfg.workers)
    try:
        with contextlib.closing(stream):  # on an error, the workers stop before the state goes
            for _, res in stream:
                results.append(_checked(res))
                first = first or time.perf_counter()
                report(progress, len(results), len(tasks))
    finally:
        _STATE.clear()
        torch.set_num_threads(threads)
    return results, first


def align_tree(src: str | Path, out: str | Path, cfg: AlignConfig, *, progress: ProgressFn = None) -> AlignSummary:
    """Align every image of `src/<identity>/<image>` into `out` (which must exist; see
    occtool.io.prepare_out_dir) and write the reports. Never raises for a single bad image."""
    from occtool.data.landmarks import write_landmarks
    from occtool.io import atomic_write_json, atomic_write_text, write_config

    src, out = Path(src), Path(out)
    check_arguments(src, out, cfg)
    records = list_identity_tree(src)
    rels = [r.relpath.as_posix() for r in records]
    tasks = [(str(r.path), rel, name) for r, rel, name in zip(records, rels, plan_output_names(rels, cfg.image_format))]
    total = len(tasks)
    start = time.perf_counter()
    report(progress, 0, total)
    results, first = _run_tasks(tasks, cfg, out, progress)
    end = time.perf_counter()
    seconds = end - start
    results.sort(key=lambda r: r.source)

    rows = [(o[0], np.asarray(o[1], dtype=np.float32).reshape(5, 2), o[2]) for r in results for o in r.outputs]
    write_landmarks(out / "landmarks.csv", rows)
    no_face = [r for r in results if r.status in ("no_face", "fallback")]
    bad = [r for r in results if r.status in ("unreadable", "error")]
    atomic_write_text(
        out / "no_face.txt",
        "".join(f"{r.source}\t{'center-crop fallback' if r.status == 'fallback' else 'skipped'}\n" for r in no_face),
    )
    atomic_write_text(out / "unreadable.txt", "".join(f"{r.source}\t{r.message}\n" for r in bad))
    readable = total - len(bad)
    found = sum(1 for r in results if r.status == "ok")
    scores = [r.outputs[0][2] for r in results if r.status == "ok"]
    metrics = {
        "images": total,
        "readable": readable,
        "faces_found": found,
        "face_found_rate": found / readable if readable else 0.0,
        "no_face": len(no_face),
        "multi_face": sum(1 for r in results if r.faces > 1),
        "fallback_center": sum(1 for r in results if r.status == "fallback"),
        "unreadable": len(bad),
        "written": len(rows),
        "mean_score": float(np.mean(scores)) if scores else None,
        "seconds": round(seconds, 3),
        "images_per_s": round(total / seconds, 2) if seconds > 0 else None,  # start-up included
        "startup_seconds": round(first - start, 3) if first else None,  # until the first image is done
        "images_per_s_after_startup": round((total - 1) / (end - first), 2) if first and end > first else None,
        "workers": cfg.workers,
        "detector": "retinaface_mnet025",
        "runtime": _resolved_runtime(cfg),
        "no_face_images": [r.source for r in no_face],
        "unreadable_images": {r.source: r.message for r in bad},
    }
    atomic_write_json(out / "metrics.json", metrics)
    write_config(out, cfg)
    return AlignSummary(metrics=metrics, results=results)
