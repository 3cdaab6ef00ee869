"""`occtool augment` as a library function: an identity tree in, occluded copies + ground truth out.

Layout of `out/`:
    images/<identity>/<name>[_c<k>].png   occluded image (PNG, lossless; `image_format=jpg`: JPEG)
    masks/<same relpath>.png              8-bit visibility, 255 = visible, 0 = occluded
    masks7/<same relpath>.npy             float32 [h, w] area mean of the mask (`mask_size`)
    manifest.jsonl                        one JSON object per output (see `augment_tree`)
    skipped.txt                           "<relpath>\\t<reason>" per unreadable source image
    metrics.json, config.yaml

Each output is drawn from its own generator seeded with `derive_seed(seed, relpath, copy)`,
so the results do not depend on the number of workers or on the order of processing, and the
same seed gives byte-identical images, masks, .npy files and manifest (metrics.json holds
timings and config.yaml the worker count: those two differ).
`<name>` is the source file name with an image suffix replaced (`a.jpg` -> `a.png`) and any
other suffix kept (`subject01.glasses` -> `subject01.glasses.png`); `_c<k>` only when copies > 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from occtool.augment.config import AugmentConfig
from occtool.errors import DataError
from occtool.progress import ProgressFn, report


def derive_seed(seed: int, relpath: str, copy: int) -> int:
    """The 63-bit seed of one output: a hash of (run seed, source relpath, copy index)."""
    digest = hashlib.sha256(f"occtool-augment\0{int(seed)}\0{relpath}\0{int(copy)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def output_relpath(relpath: str, copy: int, copies: int, suffix: str) -> str:
    from occtool.data.images import IMAGE_SUFFIXES

    p = PurePosixPath(relpath)
    stem = p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name
    tag = f"_c{copy}" if copies > 1 else ""
    return str(p.with_name(f"{stem}{tag}{suffix}"))


@dataclass
class _Task:
    path: str
    relpath: str
    identity: str
    landmarks: list | None
    landmark_source: str | None  # "file" | "template" | None (no --landmarks)


# ------------------------------------------------------------------ worker side (one per process)

_WORKER: dict[str, Any] = {}


def _init_worker(cfg_dict: dict, out: str) -> None:
    import cv2

    from occtool.augment.synth import OcclusionSynthesizer
    from occtool.config import from_dict

    cv2.setNumThreads(1)
    cfg = from_dict(AugmentConfig, cfg_dict)
    _WORKER.clear()
    _WORKER.update(cfg=cfg, out=Path(out), synth=OcclusionSynthesizer(config=cfg))


def _init_pool_worker(cfg_dict: dict, out: str) -> None:
    """A pool worker leaves Ctrl-C to the parent (which stops the pool and says so once)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(cfg_dict, out)


def _encode_image(image: np.ndarray, cfg: AugmentConfig) -> bytes:
    import cv2

    bgr = np.ascontiguousarray(image[..., ::-1])
    if cfg.image_format == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover
        raise DataError("could not encode an output image")
    return buf.tobytes()


def _process(task: _Task) -> dict:
    """Read one source image and write its copies; returns {"rows": [...]} or {"skip": reason}."""
    from occtool.augment.base import encode_mask_png, feature_mask, keypoint_visibility
    from occtool.data.images import read_image_rgb
    from occtool.io import atomic_write_bytes

    cfg: AugmentConfig = _WORKER["cfg"]
    out: Path = _WORKER["out"]
    synth = _WORKER["synth"]
    try:
        image = read_image_rgb(task.path)
    except DataError as exc:
        return {"relpath": task.relpath, "skip": str(exc)}
    suffix = ".jpg" if cfg.image_format == "jpg" else ".png"
    lm = np.asarray(task.landmarks, np.float32) if task.landmarks is not None else None
    if lm is None and task.landmark_source == "template":  # --missing-landmarks template
        from occtool.data.landmarks import template_for_size

        lm = template_for_size(image.shape[:2])
    rows = []
    for copy in range(cfg.copies):
        seed = derive_seed(cfg.seed, task.relpath, copy)
        res = synth(image, landmarks=lm, rng=np.random.default_rng(seed))
        rel_out = output_relpath(task.relpath, copy, cfg.copies, suffix)
        rel_mask = str(PurePosixPath(rel_out).with_suffix(".png"))
        rel_mask7 = str(PurePosixPath(rel_out).with_suffix(".npy"))
        atomic_write_bytes(out / "images" / rel_out, _encode_image(res.image, cfg))
        atomic_write_bytes(out / "masks" / rel_mask, encode_mask_png(res.visibility))
        buf = io.BytesIO()
        np.save(buf, feature_mask(res.visibility, cfg.mask_size), allow_pickle=False)
        atomic_write_bytes(out / "masks7" / rel_mask7, buf.getvalue())
        row = {
            "source": task.relpath,
            "output": f"images/{rel_out}",
            "mask": f"masks/{rel_mask}",
            "mask7": f"masks7/{rel_mask7}",
            "identity": task.identity,
            "copy": copy,
            "occluder": res.occluder,
            "detail": res.detail,
            "occlusion_class": res.occlusion_class,
            "occluded_fraction": round(res.occluded_fraction, 6),
            "covered_fraction": round(res.covered_fraction, 6),
            "seed": seed,
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
        }
        if task.landmark_source is not None:
            row["landmarks"] = task.landmark_source
            row["keypoint_visibility"] = keypoint_visibility(res.visibility, lm, threshold=cfg.keypoint_threshold)
        rows.append(row)
    return {"relpath": task.relpath, "rows": rows}


# ------------------------------------------------------------------ driver


def _tasks(records, landmarks_path: Path | None, cfg: AugmentConfig) -> list[_Task]:
    if landmarks_path is None:
        return [_Task(str(r.path), r.relpath.as_posix(), r.identity, None, None) for r in records]
    from occtool.data.landmarks import read_landmarks

    table = read_landmarks(landmarks_path)
    missing = [r.relpath.as_posix() for r in records if r.relpath.as_posix() not in table]
    if missing and cfg.missing_landmarks == "error":
        more = f" (and {len(missing) - 1} more images)" if len(missing) > 1 else ""
        raise DataError(
            f"landmarks file {landmarks_path} has no row for image {missing[0]}{more}; add the rows, "
            "or pass --missing-landmarks template to use the canonical 112x112 template for them"
        )
    tasks = []
    for r in records:
        key = r.relpath.as_posix()
        if key in table:
            if not np.isfinite(table[key]).all():
                raise DataError(f"landmarks file {landmarks_path}: the row of image {key} has non-finite points")
            tasks.append(_Task(str(r.path), key, r.identity, table[key].tolist(), "file"))
        else:  # fallback: the canonical template scaled to the image's size (known after decoding)
            tasks.append(_Task(str(r.path), key, r.identity, None, "template"))
    return tasks


def augment_tree(
    src: str | Path,
    out: str | Path,
    cfg: AugmentConfig | None = None,
    *,
    landmarks: str | Path | None = None,
    force: bool = False,
    progress: ProgressFn = None,
) -> dict:
    """Occlude every image of the identity tree `src` into `out` (layout in the module doc).

    Manifest rows: source (relpath under src), output / mask / mask7 (relpaths under out),
    identity, copy, occluder, detail, occlusion_class (none/opaque/transparent),
    occluded_fraction (1 - mean visibility), covered_fraction (share of pixels with
    visibility < 1), seed (np.random.default_rng(seed) reproduces this output), height, width,
    and with `landmarks`: landmarks ("file" or "template") and keypoint_visibility (COCO,
    per landmark: 2 visible, 1 covered). Returns the metrics (also written to metrics.json).
    Unreadable images are skipped and listed in skipped.txt; DataError if none could be read.
    """
    from occtool.data.images import list_identity_tree
    from occtool.io import output_folder

    cfg = cfg or AugmentConfig()
    src = Path(src)
    records = list_identity_tree(src)
    landmarks_path = Path(landmarks) if landmarks is not None else None
    tasks = _tasks(records, landmarks_path, cfg)
    suffix = ".jpg" if cfg.image_format == "jpg" else ".png"
    seen: dict[str, str] = {}
    for t in tasks:
        o = output_relpath(t.relpath, 0, cfg.copies, suffix)
        if o in seen:
            raise DataError(f"{seen[o]} and {t.relpath} would both be written as {o}; rename one of them")
        seen[o] = t.relpath
    # Build one synthesizer here so that config problems (templates missing...) fail early.
    from occtool.augment.synth import OcclusionSynthesizer

    OcclusionSynthesizer(config=cfg)

    with output_folder(out, command="augment", force=force, cfg=cfg) as folder:
        return _run(tasks, folder.path, cfg, src=src, landmarks_path=landmarks_path, progress=progress)


def _run(tasks: list[_Task], out: Path, cfg: AugmentConfig, *, src: Path, landmarks_path: Path | None,
         progress: ProgressFn) -> dict:
    """Process every task into the prepared `out`, then write manifest, skipped.txt, metrics.json."""
    from occtool.config import to_dict
    from occtool.io import atomic_write_json, atomic_write_text

    cfg_dict = to_dict(cfg)
    total = len(tasks)
    results: list[dict] = []
    started = time.perf_counter()
    report(progress, 0, total)
    if cfg.workers <= 1:
        _init_worker(cfg_dict, str(out))
        for i, task in enumerate(tasks, 1):
            results.append(_process(task))
            report(progress, i, total)
    else:
        ctx = mp.get_context("spawn")
        chunk = max(1, min(32, total // (cfg.workers * 8) or 1))
        with ctx.Pool(cfg.workers, initializer=_init_pool_worker, initargs=(cfg_dict, str(out))) as pool:
            for i, res in enumerate(pool.imap(_process, tasks, chunksize=chunk), 1):
                results.append(res)
                report(progress, i, total)
    seconds = time.perf_counter() - started

    rows = [row for r in results for row in r.get("rows", [])]
    skipped = [(r["relpath"], r["skip"]) for r in results if "skip" in r]
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(row, sort_keys=False) + "\n" for row in rows))
    atomic_write_text(out / "skipped.txt", "".join(f"{rel}\t{why}\n" for rel, why in skipped))
    per_occluder = Counter(row["occluder"] for row in rows)
    per_class = Counter(row["occlusion_class"] for row in rows)
    read_ok = total - len(skipped)
    metrics = {
        "source": str(src),
        "images_found": total,
        "images_read": read_ok,
        "images_skipped": len(skipped),
        "outputs": len(rows),
        "copies": cfg.copies,
        "workers": cfg.workers,
        "seconds": round(seconds, 3),
        "images_per_s": round(read_ok / seconds, 2) if seconds > 0 else None,
        "outputs_per_s": round(len(rows) / seconds, 2) if seconds > 0 else None,
        "per_occluder": {k: per_occluder[k] for k in sorted(per_occluder)},
        "per_class": {k: per_class[k] for k in ("none", "opaque", "transparent")},
        "mean_occluded_fraction": round(float(np.mean([r["occluded_fraction"] for r in rows])), 6) if rows else None,
        "landmarks": str(landmarks_path) if landmarks_path else None,
        "landmarks_from_template": sum(1 for t in tasks if t.landmark_source == "template"),
    }
    atomic_write_json(out / "metrics.json", metrics)
    if read_ok == 0:
        raise DataError(f"none of the {total} images under {src} could be read (see {out / 'skipped.txt'})")
    return metrics


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest.jsonl."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
