"""Batched feature extraction for evaluation, with flip TTA and an on-disk cache.

`extract_features(records, model=..., device=..., batch_size=...)` runs a `Backbone` or a
`FaceModel` over image files and returns, per image:

- `embeddings` [N, D]: L2-normalised identity embedding. With `flip=True` (default) it is the
  normalised sum of the *raw* (pre-normalisation) embeddings of the image and its horizontal
  mirror (the usual test-time augmentation; raw = embedding * norm).
- `occ_embeddings` [N, D] (FaceModel only): the occlusion-aware embedding
  `embed(feature_map * visibility)` with the model's own predicted visibility, flip-summed the
  same way (the mirror uses its own predicted visibility).
- `match_maps` [N, C', H, W]: the QAConv matching features (FaceModel: `match_map`; Backbone:
  the feature map), from the unflipped image only; None when `with_maps=False`.
- `occlusion` [N, 1, H, W] (FaceModel only): predicted visibility of the unflipped image.
- `contributions` [N, V*L, D] and `visibility_views` [N, V*L] (FaceModel, with
  `with_contributions=True`): per view (V = 2 with flip: the image, then its mirror) and
  location (L = H*W), the output layer's contributions and the predicted visibility, for the
  visibility-matched embedding (`occtool.matching.visibility_matched`). float32: a randomly
  initialised network's contributions underflow float16.
- `ok_mask` [N] bool: False for images that failed to load (their rows are zeros); `errors`
  says why. `max_bad` turns "too many bad images" into a DataError.

Cache: with `cache_dir` and a `model_key` (see `model_identity`), every image's outputs are
stored as `<cache_dir>/<model_key>/<sha1[:2]>/<sha1>.npz` (plain arrays: `np.savez`, read with
`allow_pickle=False`), keyed by the file's content hash, so renamed/copied files hit too.

Runtime (`runtime="torch" | "onnxruntime" | "auto"`, `occtool.runtime`): the forward pass runs in
PyTorch (`_forward`) or in ONNX Runtime on the model's exported graph (`occtool.models.export`;
both views in one call, images decoded and preprocessed in a background thread while the graph
runs). Both fill the same `Features` from the same formulas (`_outputs` / `_graph_outputs`). The
runtime is NOT part of the cache key: the graph is used only after it agreed with PyTorch on the
first batch of the run's own images to 1e-4 (max abs difference, every output; otherwise
`onnxruntime` is an error and `auto` falls back to PyTorch), so cached features from either
runtime stand for the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from occtool.data.images import ImageRecord, file_sha1, read_image_rgb
from occtool.errors import DataError
from occtool.progress import ProgressFn, report

CACHE_FORMAT = 1
_OPTIONAL = ("match_map", "occlusion", "occ_embedding", "contrib", "vis_views")


@dataclass
class Features:
    embeddings: torch.Tensor  # [N, D] float32, L2-normalised (zeros where not ok)
    match_maps: torch.Tensor | np.ndarray | None  # [N, C', H, W] float32 (np.memmap with maps_file)
    occlusion: torch.Tensor | None  # [N, 1, H, W] float32 in [0, 1]
    ok_mask: np.ndarray  # [N] bool
    paths: list[Path]
    hashes: list[str | None]  # sha1 of the file bytes (None when unreadable)
    occ_embeddings: torch.Tensor | None = None  # [N, D] occlusion-aware embedding (FaceModel)
    contributions: torch.Tensor | np.ndarray | None = None  # [N, V*L, D] (memmap with maps_file)
    visibility_views: torch.Tensor | None = None  # [N, V*L] predicted visibility per view and location
    errors: list[str] = field(default_factory=list)  # one line per bad image
    n_resized: int = 0  # images not of the model's input size, resized to it
    cache_hits: int = 0
    runtime: str = "torch"  # the runtime that computed the images not in the cache

    @property
    def n_bad(self) -> int:
        return int((~self.ok_mask).sum())


def model_identity(*, backbone: str, weights_file: str | Path | None, flip: bool, kind: str) -> str | None:
    """Cache key of a model: hash of (weights/checkpoint file content, backbone name, flip, kind).

    None (no caching) for a randomly initialised model (no weights file).
    """
    if weights_file is None:
        return None
    desc = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "backbone": backbone,
        "weights_sha1": file_sha1(weights_file),
        "flip": bool(flip),
    }
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


def _is_face_model(model) -> bool:
    return hasattr(model, "backbone") and hasattr(model, "occlusion_aware_embedding")


def _input_spec(model):
    return model.backbone.input_spec if _is_face_model(model) else model.input_spec


def _normalise(raw: torch.Tensor) -> torch.Tensor:
    return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


@torch.inference_mode()
def _outputs(model, views: Sequence[torch.Tensor], *, with_maps: bool,
             jacobian: torch.Tensor | None = None, stage: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The body's feature maps of V views of a batch (`views[v]` [B, C, H, W]: the image, then its
    mirror) -> dict of CPU float32 outputs (see module doc). Every output is computed from the
    feature maps (and `stage` [B, C_s, H, W], the image's last-stage input, for a FaceModel with
    the QAConv branch), so a frozen body's stored maps give exactly what images would."""
    face = _is_face_model(model)
    backbone = model.backbone if face else model
    raw = occ_raw = 0
    occlusions = []
    for fm in views:
        fm = fm.float()
        e, n = backbone.embed(fm)
        raw = raw + e * n
        if face:
            v = model.head(fm)
            occlusions.append(v)
            e, n = model.occlusion_aware_embedding(fm, v)
            occ_raw = occ_raw + e * n
    res = {"embedding": _normalise(raw.float()).cpu()}
    if face:
        res["occ_embedding"] = _normalise(occ_raw.float()).cpu()
        res["occlusion"] = occlusions[0].float().cpu()
    if with_maps:
        fm0 = views[0].float()
        st = None if stage is None else stage.float()
        res["match_map"] = (model.match_features(fm0, st) if face else fm0).float().cpu()
    if face and jacobian is not None:  # the visibility-matched embedding's inputs
        from occtool.matching.visibility_matched import output_layer_contributions

        b = len(views[0])
        res["contrib"] = torch.cat([output_layer_contributions(backbone, fm.float(), jacobian=jacobian)
                                    for fm in views], dim=1).float().cpu()
        res["vis_views"] = torch.cat([v.reshape(b, -1) for v in occlusions], dim=1).float().cpu()
    return res


@torch.inference_mode()
def _forward(model, x: torch.Tensor, *, flip: bool, with_maps: bool,
             jacobian: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One preprocessed batch [B, 3, H, W] -> dict of CPU float32 tensors (see module doc)."""
    face = _is_face_model(model)
    backbone = model.backbone if face else model
    backbone.check_input(x)
    fm, stage = model.body(x) if face else (backbone.features(x), None)
    views = [fm]
    if flip:
        views.append(backbone.features(torch.flip(x, dims=[3])))
    return _outputs(model, views, with_maps=with_maps, jacobian=jacobian, stage=stage)


def _graph_outputs(model, out: dict[str, np.ndarray], *, views: int, with_maps: bool,
                   jacobian: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The exported graph's outputs for a batch of V stacked views ([V*B, ...]: the images, then
    their mirrors) -> the same dict as `_outputs` (same formulas: flip-summed raw embeddings)."""
    face = _is_face_model(model)
    t = {k: torch.from_numpy(v).unflatten(0, (views, -1)) for k, v in out.items()}  # [V, B, ...]
    res = {"embedding": _normalise((t["embedding"] * t["norm"]).sum(0))}
    if face:
        res["occ_embedding"] = _normalise((t["occ_embedding"] * t["occ_norm"]).sum(0))
        res["occlusion"] = t["occlusion"][0]
    if with_maps:
        res["match_map"] = t["match_map" if face else "feature_map"][0]
    if face and jacobian is not None:
        from occtool.matching.visibility_matched import output_layer_contributions

        b = t["feature_map"].shape[1]
        res["contrib"] = torch.cat([output_layer_contributions(model.backbone, fm, jacobian=jacobian)
                                    for fm in t["feature_map"]], dim=1)
        res["vis_views"] = torch.cat([v.reshape(b, -1) for v in t["occlusion"]], dim=1)
    return res


def _needed(face: bool, with_maps: bool, with_contributions: bool) -> list[str]:
    needed = ["embedding"] + (["occ_embedding", "occlusion"] if face else []) + (["match_map"] if with_maps else [])
    return needed + (["contrib", "vis_views"] if with_contributions else [])


def _as_features(arrays: dict[str, torch.Tensor | np.ndarray | None], *, n: int, ok: np.ndarray, paths, hashes,
                 **extra) -> Features:
    return Features(
        embeddings=arrays["embedding"], match_maps=arrays.get("match_map"), occlusion=arrays.get("occlusion"),
        ok_mask=ok, paths=paths, hashes=hashes, occ_embeddings=arrays.get("occ_embedding"),
        contributions=arrays.get("contrib"), visibility_views=arrays.get("vis_views"), **extra,
    )


@torch.inference_mode()
def features_from_maps(model, views: Sequence[torch.Tensor], *, device, with_maps: bool = True,
                       with_contributions: bool = False, batch_size: int = 512,
                       stage: torch.Tensor | None = None, jacobian: torch.Tensor | None = None) -> Features:
    """Features of images whose body feature maps are already computed (a frozen body's cache).

    views: V tensors [N, C, H, W] (the images, then their mirrors for flip TTA; any float dtype,
    any device). stage: [N, C_s, H, W] the images' last-stage inputs (needed for the match maps of
    a FaceModel with the QAConv branch). `model` (Backbone or FaceModel) is used as given (eval
    mode is the caller's). jacobian: the output layer's (`output_layer_jacobian`), when the caller
    scores several sets with one model (computed here otherwise: seconds per call).
    Returns the same `Features` as `extract_features` on the images, every row ok.
    """
    views = list(views)
    n = len(views[0])
    face = _is_face_model(model)
    with_contributions = with_contributions and face
    if not with_contributions:
        jacobian = None
    elif jacobian is None:
        from occtool.matching.visibility_matched import output_layer_jacobian

        jacobian = output_layer_jacobian(model.backbone, device=device)
    parts: dict[str, list[torch.Tensor]] = {}
    for s in range(0, n, batch_size):
        st = None if stage is None else stage[s:s + batch_size].to(device)
        res = _outputs(model, [v[s:s + batch_size].to(device) for v in views], with_maps=with_maps, jacobian=jacobian,
                       stage=st)
        for k, t in res.items():
            parts.setdefault(k, []).append(t)
    arrays = {k: torch.cat(v) for k, v in parts.items()}
    for k in _needed(face, with_maps, with_contributions):
        arrays.setdefault(k, None)
    return _as_features(arrays, n=n, ok=np.ones(n, dtype=bool), paths=[], hashes=[None] * n)


def _cache_path(cache_dir: Path, model_key: str, h: str) -> Path:
    return cache_dir / model_key / h[:2] / f"{h}.npz"


def _cache_load(path: Path, needed: Sequence[str], shapes: dict | None = None) -> dict[str, np.ndarray] | None:
    """An entry's arrays, or None (a miss) when absent, damaged, or of other shapes than `shapes`."""
    try:
        with np.load(path, allow_pickle=False) as z:  # lazy: only the arrays asked for are read
            if not all(k in z.files for k in needed):
                return None
            got = {k: z[k] for k in [*needed, "resized"] if k in z.files}
            if shapes is not None and any(got[k].shape != shapes[k] for k in needed):
                return None  # well-formed but not this model's outputs: recompute
            return got
    except (OSError, ValueError, EOFError, KeyError):
        return None  # missing or damaged entry: recompute


def _cache_store(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache that cannot be written is not an error


def _load_image(path: Path, size_hw: tuple[int, int]) -> tuple[np.ndarray | None, bool, str | None]:
    try:
        img = read_image_rgb(path)
    except DataError as exc:
        return None, False, str(exc)
    resized = False
    if img.shape[:2] != tuple(size_hw):
        from occtool.models import resize_to

        img = resize_to(img, size_hw)
        resized = True
    return img, resized, None


class _Rows:
    """Per-image outputs of one kind, filled row by row into one preallocated float32 array
    (in RAM, or a memory-mapped .npy file when `path` is given)."""

    def __init__(self, n: int, path: Path | None = None):
        self.n = n
        self.path = path
        self.arr: np.ndarray | None = None

    def set(self, i: int, a: np.ndarray) -> None:
        if self.arr is None:
            shape = (self.n,) + tuple(a.shape)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.arr = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32, shape=shape)
            else:
                self.arr = np.zeros(shape, dtype=np.float32)
        self.arr[i] = a

    def get(self, i: int) -> np.ndarray:
        return self.arr[i]

    def result(self):
        if self.arr is None:
            return None
        if isinstance(self.arr, np.memmap):
            self.arr.flush()
            return self.arr
        return torch.from_numpy(self.arr)


def _hash_or_none(path: Path) -> str | None:
    try:
        return file_sha1(path)
    except OSError:
        return None


@dataclass
class _Run:
    """One extraction's state: where each image's outputs go and what happened to it."""

    paths: list[Path]
    hashes: list[str | None]
    needed: list[str]
    outputs: dict[str, _Rows]
    cache_root: Path | None
    model_key: str | None
    ok: np.ndarray = None  # type: ignore[assignment]
    resized: np.ndarray = None  # type: ignore[assignment]
    errors: list[str] = field(default_factory=list)
    hits: int = 0
    shapes: dict | None = None  # {output: row shape} a cache entry must have (see _row_shapes)

    def __post_init__(self) -> None:
        self.ok = np.zeros(len(self.paths), dtype=bool)
        self.resized = np.zeros(len(self.paths), dtype=bool)

    def store(self, i: int, arrays: dict[str, np.ndarray], resized: bool) -> None:
        for k in self.needed:
            self.outputs[k].set(i, arrays[k])
        self.ok[i] = True
        self.resized[i] = resized

    def from_cache(self) -> list[int]:
        """Fill what the cache holds; return the images still to compute."""
        todo = []
        for i, h in enumerate(self.hashes):
            if h is None:
                self.errors.append(f"image not readable: {self.paths[i]}")
                continue
            if self.cache_root is not None:
                got = _cache_load(_cache_path(self.cache_root, self.model_key, h), self.needed, self.shapes)
                if got is not None:
                    self.store(i, got, bool(got.get("resized", np.array(False))))
                    self.hits += 1
                    continue
            todo.append(i)
        return todo

    def remember(self, i: int, arrays: dict[str, np.ndarray], resized: bool) -> None:
        self.store(i, arrays, resized)
        if self.cache_root is not None:
            _cache_store(_cache_path(self.cache_root, self.model_key, self.hashes[i]), {**arrays, "resized": np.array(resized)})

    def copy_duplicates(self, dup_of: dict[int, int]) -> None:
        for i, j in dup_of.items():
            if self.ok[j]:
                self.store(i, {k: self.outputs[k].get(j) for k in self.needed}, bool(self.resized[j]))
            else:
                self.errors.append(f"image does not decode: {self.paths[i]}")


def _unique_by_hash(todo: list[int], hashes) -> tuple[list[int], dict[int, int]]:
    """Images with the same content run once: (first of each content, duplicate -> its first)."""
    first_of: dict[str, int] = {}
    unique, dup_of = [], {}
    for i in todo:
        if hashes[i] in first_of:
            dup_of[i] = first_of[hashes[i]]
        else:
            first_of[hashes[i]] = i
            unique.append(i)
    return unique, dup_of


def _row_shapes(model, *, spec, device, flip, with_maps, jacobian, needed) -> dict[str, tuple]:
    """The per-image shape of every output, from one forward of a blank image (checks cache entries)."""
    from occtool.models import inference_copy, preprocess

    if model.training:  # the ONNX Runtime path keeps the caller's model: run an eval copy here
        model = inference_copy(model, device)
    h, w = spec.size_hw
    res = _forward(model, preprocess(np.zeros((1, h, w, 3), np.uint8), spec, device=device), flip=flip,
                   with_maps=with_maps, jacobian=jacobian)
    return {k: tuple(res[k].shape[1:]) for k in needed}


def _output_rows(n: int, needed, maps_file, with_maps: bool, with_contributions: bool) -> dict[str, _Rows]:
    outputs = {k: _Rows(n) for k in needed}
    if maps_file is not None and with_maps:
        outputs["match_map"] = _Rows(n, Path(maps_file))
    if maps_file is not None and with_contributions:
        outputs["contrib"] = _Rows(n, Path(maps_file).with_name(Path(maps_file).stem + "_contrib.npy"))
    return outputs


def _run_batches(run: _Run, unique: list[int], model, *, spec, device, flip, with_maps, jacobian, batch_size,
                 pool, progress, done: int) -> None:
    from occtool.models import preprocess

    n = len(run.paths)
    for start in range(0, len(unique), batch_size):
        idx = unique[start : start + batch_size]
        loaded = list(pool.map(lambda i: _load_image(run.paths[i], spec.size_hw), idx))
        good = [(i, img, rs) for i, (img, rs, _) in zip(idx, loaded) if img is not None]
        run.errors.extend(err or f"image does not decode: {run.paths[i]}"
                          for i, (img, _, err) in zip(idx, loaded) if img is None)
        if good:
            x = preprocess(np.stack([g[1] for g in good]), spec, device=device)
            res = _forward(model, x, flip=flip, with_maps=with_maps, jacobian=jacobian)
            for j, (i, _, rs) in enumerate(good):
                run.remember(i, {k: res[k][j].numpy() for k in run.needed}, rs)
        done += len(idx)
        report(progress, min(done, n), n)


# With one thread: decode ahead in a background thread: True, False, or "auto" (only when ONNX
# Runtime's thread leaves a core free). With more, `_run_graph_batches` runs data-parallel
# workers instead (`occtool.runtime.parallel`), each decoding its own batches.
PREFETCH = True


def _prefetch(threads: int) -> bool:
    """Whether to decode ahead in a thread (see PREFETCH)."""
    from occtool.runtime.threads import available_cores

    return threads < available_cores() if PREFETCH == "auto" else bool(PREFETCH)


CHECK_ROWS = 16  # rows of the first batch (images and mirrors) the exported graph is checked on
ORT_BATCH = 8  # ONNX Runtime on the CPU is fastest on small batches (they stay in cache): at most this


def _load_batch(paths: list[Path], idx: list[int], spec, flip: bool):
    """Decode and preprocess one batch (in the prefetch thread) -> (good [(i, resized)], errors,
    x [V*B, 3, H, W] float32 numpy: the images, then their mirrors; None when none decodes)."""
    from occtool.models import preprocess

    loaded = [_load_image(paths[i], spec.size_hw) for i in idx]
    good = [(i, rs) for i, (img, rs, _) in zip(idx, loaded) if img is not None]
    errors = [err or f"image does not decode: {paths[i]}" for i, (img, _, err) in zip(idx, loaded) if img is None]
    if not good:
        return good, errors, None
    x = preprocess(np.stack([img for img, _, _ in loaded if img is not None]), spec).numpy()
    if flip:
        x = np.concatenate([x, x[..., ::-1]])
    return good, errors, np.ascontiguousarray(x)


def _run_graph_batches(run: _Run, unique: list[int], model, graph, *, spec, flip, with_maps, jacobian, batch_size,
                       progress, done: int, prefetch: bool = True, workers: int = 1) -> None:
    """The ONNX Runtime path. `workers` > 1: that many threads, each decoding a batch and running it
    through the graph (a session with one intra-op thread: `occtool.runtime.parallel`); one worker:
    with `prefetch`, batch k+1 is decoded in a background thread while the graph runs batch k
    (`occtool.runtime.prefetch`), without, one after the other."""
    from occtool.runtime.parallel import ordered_map
    from occtool.runtime.prefetch import prefetched

    n = len(run.paths)
    batches = [unique[s : s + batch_size] for s in range(0, len(unique), batch_size)]

    def load(idx):
        return _load_batch(run.paths, idx, spec, flip)

    def infer(loaded):
        good, errors, x = loaded
        res = None if x is None else _graph_outputs(model, graph.run(x), views=2 if flip else 1, with_maps=with_maps,
                                                     jacobian=jacobian)
        return good, errors, res

    if workers > 1:
        stream = ordered_map(lambda idx: infer(load(idx)), batches, workers=workers)
    else:
        loads = prefetched(load, batches) if prefetch else ((b, load(b)) for b in batches)
        stream = ((idx, infer(loaded)) for idx, loaded in loads)
    for idx, (good, errors, res) in stream:
        run.errors.extend(errors)
        for j, (i, rs) in enumerate(good):
            run.remember(i, {key: res[key][j].numpy() for key in run.needed}, rs)
        done += len(idx)
        report(progress, min(done, n), n)


def _open_graph(model, runtime: str, *, paths, unique, spec, flip, threads, graph_dir, model_key):
    """The exported graph checked on the first images of this run, or None (PyTorch) when
    `auto` and the model does not export or disagrees (ExportError with `onnxruntime`)."""
    from occtool.models.export import ExportError
    from occtool.runtime import onnx_graph_for

    def check_inputs():
        for s in range(0, len(unique), CHECK_ROWS):  # the first images that decode
            _, _, x = _load_batch(paths, unique[s : s + CHECK_ROWS], spec, flip)
            if x is not None:
                return torch.from_numpy(x[:: max(1, len(x) // CHECK_ROWS)])
        return None

    try:
        return onnx_graph_for(model, check_inputs=check_inputs, threads=threads, graph_dir=graph_dir,
                              fingerprint=model_key)
    except ExportError:
        if runtime == "onnxruntime":
            raise
        return None


def _prepared(model, runtime: str, device: torch.device, with_contributions: bool):
    """(the network to run, the output layer's Jacobian or None). PyTorch runs an `inference_copy`
    (BatchNorms folded, channels-last on CPU: ~2.4x faster); for ONNX Runtime the graph is exported
    from an eval copy (export_onnx), and a fallback to PyTorch copies then."""
    from occtool.models import inference_copy
    from occtool.runtime import resolve_runtime

    if resolve_runtime(runtime, device) == "torch" or with_contributions:
        model = inference_copy(model, device)
    if not with_contributions:
        return model, None
    from occtool.matching.visibility_matched import output_layer_jacobian

    return model, output_layer_jacobian(model.backbone, device=device)  # once: per batch it is one einsum


def _start_run(paths: list[Path], pool, model, *, device, flip, with_maps, jacobian, needed, maps_file, cache_dir,
               model_key) -> _Run:
    """The run's bookkeeping: file hashes (read on `pool`), output rows, the cache's row shapes."""
    run = _Run(paths=paths, hashes=list(pool.map(_hash_or_none, paths)), needed=needed,
               outputs=_output_rows(len(paths), needed, maps_file, with_maps, jacobian is not None),
               cache_root=Path(cache_dir) if cache_dir is not None and model_key is not None else None,
               model_key=model_key)
    if run.cache_root is not None:
        run.shapes = _row_shapes(model, spec=_input_spec(model), device=device, flip=flip, with_maps=with_maps,
                                 jacobian=jacobian, needed=needed)
    return run


def extract_features(
    records,
    *,
    model,
    device,
    batch_size: int = 64,
    flip: bool = True,
    cache_dir: str | Path | None = None,
    progress: ProgressFn = None,
    model_key: str | None = None,
    with_maps: bool = True,
    max_bad: int | None = None,
    num_threads: int = 4,
    maps_file: str | Path | None = None,
    with_contributions: bool = False,
    runtime: str = "torch",
    threads: int | None = None,
    graph_dir: str | Path | None = None,
) -> Features:
    """Features of every image in `records` (ImageRecords or paths); see the module doc.

    The model runs as an eval-mode `inference_copy` (the caller's model is left as it is).
    `cache_dir` is used only together with `model_key`.
    `max_bad`: DataError when more images than this fail to load (None: never).
    `maps_file`: write the match maps to this memory-mapped .npy file instead of RAM (large
    galleries); `Features.match_maps` is then that `np.memmap` (the scorers accept both), and
    the contributions go to `<maps_file stem>_contrib.npy` likewise.
    `with_contributions`: also the visibility-matched embedding's inputs (FaceModel only).
    `runtime`: "torch", "onnxruntime" or "auto" (module doc; `Features.runtime` says which ran;
    auto uses ONNX Runtime only for a model with a `model_key`, whose graph can be cached);
    `threads`: cores for ONNX Runtime (None: `occtool.runtime.default_threads()`): that many data-parallel
    workers, each running its batches through a one-thread session (`occtool.runtime.parallel`).
    `graph_dir`: where the exported graph is kept, as `<model_key>.onnx` (default `<cache_dir>/onnx`
    with a cache_dir; without either, or without a model_key, it is exported for this call only).
    """
    paths = [Path(r.path) if isinstance(r, ImageRecord) else Path(r) for r in records]
    n, device = len(paths), torch.device(device)
    face = _is_face_model(model)
    with_contributions = with_contributions and face
    model, jacobian = _prepared(model, runtime, device, with_contributions)
    needed = _needed(face, with_maps, with_contributions)
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        run = _start_run(paths, pool, model, device=device, flip=flip, with_maps=with_maps, jacobian=jacobian,
                         needed=needed, maps_file=maps_file, cache_dir=cache_dir, model_key=model_key)
        todo = run.from_cache()
        report(progress, n - len(todo), n)
        unique, dup_of = _unique_by_hash(todo, run.hashes)
        used = _run_unique(run, unique, model, runtime=runtime, threads=threads, device=device, flip=flip,
                           with_maps=with_maps, jacobian=jacobian, batch_size=batch_size, pool=pool,
                           progress=progress, done=n - len(todo), model_key=model_key,
                           graph_dir=graph_dir if graph_dir is not None else
                           (Path(cache_dir) / "onnx" if cache_dir is not None else None))
    run.copy_duplicates(dup_of)
    report(progress, n, n)
    feats = _finish(run, model, face, max_bad)
    feats.runtime = used
    return feats


def _run_unique(run: _Run, unique, model, *, runtime, threads, device, flip, with_maps, jacobian, batch_size, pool,
                progress, done, graph_dir, model_key) -> str:
    """Compute the images not in the cache with the runtime asked for; returns the one used."""
    from occtool.runtime import resolve_runtime
    from occtool.runtime.threads import resolve_threads

    spec = _input_spec(model)
    graph = None
    # auto skips a model without a fingerprint (random weights: tests, smoke runs): its graph could
    # not be cached, and exporting costs more than the few images such runs extract
    workers = resolve_threads(threads)  # ONNX Runtime: data-parallel one-thread sessions (parallel.py)
    if unique and resolve_runtime(runtime, device) == "onnxruntime" and (runtime != "auto" or model_key):
        graph = _open_graph(model, runtime, paths=run.paths, unique=unique, spec=spec, flip=flip,
                            threads=1, graph_dir=graph_dir, model_key=model_key)
    if graph is None:
        from occtool.models import inference_copy

        model = inference_copy(model, device)  # a no-op when it is the copy already
        _run_batches(run, unique, model, spec=spec, device=device, flip=flip, with_maps=with_maps, jacobian=jacobian,
                     batch_size=batch_size, pool=pool, progress=progress, done=done)
        return "torch" if unique else "none (all cached)"
    from occtool.runtime import torch_threads

    try:  # torch only preprocesses here: one thread, the cores are ONNX Runtime's (no oversubscription)
        with torch_threads(1):
            _run_graph_batches(run, unique, model, graph, spec=spec, flip=flip, with_maps=with_maps,
                               jacobian=jacobian, batch_size=min(batch_size, ORT_BATCH), progress=progress, done=done,
                               prefetch=_prefetch(workers), workers=workers)
    finally:
        graph.close()
    return "onnxruntime"


def _finish(run: _Run, model, face: bool, max_bad: int | None) -> Features:
    n = len(run.paths)
    n_bad = int((~run.ok).sum())
    if max_bad is not None and n_bad > max_bad:
        raise DataError(f"{n_bad} of {n} images failed to load (limit --max-bad {max_bad}); "
                        f"first: {run.errors[0] if run.errors else '?'}")
    arrays = {k: run.outputs[k].result() if k in run.needed else None for k in ("embedding", *_OPTIONAL)}
    if arrays["embedding"] is None:
        d = int(getattr(model.backbone if face else model, "embedding_dim", 0))
        arrays["embedding"] = torch.zeros((n, d), dtype=torch.float32)
    return _as_features(arrays, n=n, ok=run.ok, paths=run.paths, hashes=run.hashes, errors=run.errors,
                        n_resized=int(run.resized.sum()), cache_hits=run.hits)
