"""Training data: the identity list, on-the-fly occluded batches, and the frozen-body feature cache.

Randomness is a pure function of (seed, epoch, step, position in the global batch), never of a
process-wide RNG stream: a resumed run and a run split over several processes see exactly the
same views.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from occtool.data.images import ImageRecord, list_identity_tree, mask_path_for, read_image_rgb
from occtool.errors import ConfigError, DataError
from occtool.progress import ProgressFn, report
from occtool.runtime.threads import resolve_threads

#: Above this many images the decoded images are not kept in memory.
MAX_DECODED_IN_MEMORY = 60_000


def view_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(k) for k in key]]))


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class TrainData:
    records: list[ImageRecord]  # training images
    labels: np.ndarray  # [N] int64 class index of each record
    identities: list[str]  # class index -> identity name
    validation: list[ImageRecord]  # held-out validation images (may be empty)
    info: dict = field(default_factory=dict)


def resolve_root(path: str, what: str) -> Path:
    if not path:
        raise ConfigError(f"{what} is not set")
    from occtool.evaluation.pairs import resolve_image_root

    try:
        return resolve_image_root(path)
    except DataError:
        raise DataError(f"{what}: data folder not found: {path}") from None


def excluded_people(pairs_file: str | None, folds: str | None) -> set[str]:
    if not pairs_file and not folds:
        return set()
    if not pairs_file or not folds:
        raise ConfigError("data.exclude_pairs_file and data.exclude_folds go together")
    from occtool.evaluation.pairs import parse_folds, people_in_folds, read_pairs

    pairs = read_pairs(pairs_file)
    n_folds = max(p.fold for p in pairs) + 1
    return people_in_folds(pairs, parse_folds(folds, n_folds))


def build_train_data(cfg) -> TrainData:
    """Training records (minus excluded and validation people) and the validation records."""
    d, v = cfg.data, cfg.validation
    root = resolve_root(d.train_root, "data.train_root")
    records = list_identity_tree(root, min_images=max(1, d.min_images))
    excluded = excluded_people(d.exclude_pairs_file, d.exclude_folds)
    n_excl = len({r.identity for r in records if r.identity in excluded})
    records = [r for r in records if r.identity not in excluded]
    idents = sorted({r.identity for r in records})
    if d.max_identities is not None:
        keep = set(idents[: d.max_identities])
        records = [r for r in records if r.identity in keep]
        idents = sorted(keep)
    validation: list[ImageRecord] = []
    if v.enabled:
        if v.root:
            vroot = resolve_root(v.root, "validation.root")
            validation = list_identity_tree(vroot, min_images=2)
            overlap = {r.identity for r in validation} & set(idents)
            if overlap:
                raise DataError(
                    f"validation.root shares {len(overlap)} identities with the training data "
                    f"(first: {', '.join(sorted(overlap)[:3])}); validation must be held out"
                )
        elif v.holdout_identities > 0:
            counts: dict[str, int] = {}
            for r in records:
                counts[r.identity] = counts.get(r.identity, 0) + 1
            multi = sorted(i for i, c in counts.items() if c >= 2)
            if len(multi) < 2:
                raise DataError("validation needs at least 2 training identities with >= 2 images to hold out")
            rng = np.random.default_rng(v.seed)
            n = min(v.holdout_identities, len(multi) // 2)
            held = set(multi[j] for j in rng.choice(len(multi), size=n, replace=False))
            validation = [r for r in records if r.identity in held]
            records = [r for r in records if r.identity not in held]
            idents = sorted({r.identity for r in records})
    if not records:
        raise DataError(f"no training images left under {root} after the exclusions")
    index = {name: i for i, name in enumerate(idents)}
    labels = np.array([index[r.identity] for r in records], dtype=np.int64)
    info = {
        "train_root": str(root),
        "images": len(records),
        "identities": len(idents),
        "identities_excluded_by_folds": n_excl,
        "validation_images": len(validation),
        "validation_identities": len({r.identity for r in validation}),
    }
    return TrainData(records=records, labels=labels, identities=idents, validation=validation, info=info)


# ---------------------------------------------------------------------------------------------
# one view of an image


@dataclass
class View:
    image: np.ndarray  # uint8 [H, W, 3], occluded (or clean) and possibly flipped
    clean: np.ndarray  # uint8 [H, W, 3], the same image without occlusion, same flip
    visibility: np.ndarray  # float32 [H, W]
    has_mask: bool
    flipped: bool


class ImageLoader:
    """Decodes images (kept in memory for small data sets) and makes occluded views of them."""

    def __init__(self, records: Sequence[ImageRecord], *, synthesizer, mask_root: str | None, flip: bool,
                 size_hw: tuple[int, int] = (112, 112)) -> None:
        self.records = list(records)
        self.synthesizer = synthesizer
        self.mask_root = Path(mask_root) if mask_root else None
        self.flip = flip
        self.size_hw = tuple(size_hw)
        self._decoded: dict[int, np.ndarray] | None = {} if len(self.records) <= MAX_DECODED_IN_MEMORY else None

    def image(self, index: int) -> np.ndarray:
        if self._decoded is not None and index in self._decoded:
            return self._decoded[index]
        img = read_image_rgb(self.records[index].path)
        if img.shape[:2] != self.size_hw:
            from occtool.models import resize_to

            img = resize_to(img, self.size_hw)
        if self._decoded is not None:
            self._decoded[index] = img
        return img

    def mask(self, index: int) -> np.ndarray | None:
        if self.mask_root is None:
            return None
        path = mask_path_for(self.mask_root, self.records[index].relpath)
        if not path.is_file():
            return None
        from occtool.augment import read_visibility_png

        vis = read_visibility_png(path)
        if vis.shape != self.size_hw:
            raise DataError(f"mask {path}: expected {self.size_hw} like the images, got {vis.shape}")
        return vis

    def view(self, index: int, rng: np.random.Generator, *, occlude: bool | None = None, flip: bool | None = None,
             degrade: bool = False) -> View:
        """One view; `occlude`/`flip` None: drawn from rng (synthesizer's keep_clean; flip 50%).
        `degrade`: a clean view (occlude=False) also gets the synthesizer's image degradations
        (occlusion.degrade; occluded views get them from the synthesizer itself)."""
        img = self.image(index)
        gt = self.mask(index)
        do_flip = bool(rng.random() < 0.5) if flip is None else flip
        do_flip = do_flip and (self.flip or flip is True)
        if gt is not None:  # an already occluded image with its mask
            clean, occluded, vis, has = img, img, gt, True
        elif occlude is False or self.synthesizer is None:
            clean, occluded, vis, has = img, img, np.ones(img.shape[:2], np.float32), occlude is False
            if degrade and self.synthesizer is not None:
                occluded = self.synthesizer.degrade(img, rng)
        else:
            res = self.synthesizer(img, rng=rng)
            if occlude and res.occluder == "none":  # asked for an occluded view: draw again
                for _ in range(8):
                    res = self.synthesizer(img, rng=rng)
                    if res.occluder != "none":
                        break
            clean, occluded, vis, has = img, res.image, res.visibility, True
        if do_flip:
            clean, occluded, vis = clean[:, ::-1], occluded[:, ::-1], vis[:, ::-1]
        return View(np.ascontiguousarray(occluded), np.ascontiguousarray(clean), np.ascontiguousarray(vis, dtype=np.float32), has, do_flip)


def feature_masks(vis: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    from occtool.augment import feature_mask

    return feature_mask(vis, size_hw)


class ImageBatches:
    """Image-mode batches: `load(indices, epoch=, step=, offset=)` -> dict of CPU tensors."""

    def __init__(self, loader: ImageLoader, labels: np.ndarray, *, seed: int, threads: int, map_size: tuple[int, int]):
        self.loader = loader
        self.labels = labels
        self.seed = seed
        self.map_size = map_size
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads)) if threads > 1 else None

    def _one(self, args):
        index, epoch, step, pos = args
        return self.loader.view(index, view_rng(self.seed, epoch, step, pos))

    def load(self, indices: Sequence[int], *, epoch: int, step: int, offset: int) -> dict:
        jobs = [(int(i), epoch, step, offset + j) for j, i in enumerate(indices)]
        views = list(self.pool.map(self._one, jobs)) if self.pool else [self._one(j) for j in jobs]
        vis = np.stack([v.visibility for v in views])
        return {
            "images": torch.from_numpy(np.stack([v.image for v in views])),  # uint8 [b, H, W, 3]
            "clean_images": torch.from_numpy(np.stack([v.clean for v in views])),
            "feature_mask": torch.from_numpy(feature_masks(vis, self.map_size)).unsqueeze(1),  # [b, 1, h, w]
            "has_mask": torch.tensor([v.has_mask for v in views]),
            "labels": torch.from_numpy(self.labels[np.asarray(indices, dtype=np.int64)]),
            "ids": torch.arange(offset, offset + len(indices)),
        }

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)


# ---------------------------------------------------------------------------------------------
# feature cache (frozen body)


@dataclass
class FeatureCache:
    """The frozen body's feature maps of `V` views of each image.

    fm [N, V, C, H, W] float16; fmask [N, V, 1, h, w] float32 ground-truth visibility at map
    resolution; has_mask [N, V] bool; flipped [N, V] bool; teacher [N, 2, D] float32: the frozen
    backbone's L2-normalised embedding of the clean image (index 0) and of its mirror (index 1);
    stage [N, V, C_s, H, W] float16: the last stage's input of each view (only for the QAConv
    branch, model.qaconv_branch; else None).
    """

    fm: torch.Tensor
    fmask: torch.Tensor
    has_mask: torch.Tensor
    flipped: torch.Tensor
    teacher: torch.Tensor
    stage: torch.Tensor | None = None

    @property
    def views(self) -> int:
        return int(self.fm.shape[1])


def _cache_key(records, cfg, weights_desc: str) -> str:
    d = cfg.data
    from occtool.config import to_dict

    desc = {
        "v": 2,
        "files": [f"{r.relpath}:{Path(r.path).stat().st_size}" for r in records],
        "weights": weights_desc,
        "backbone": cfg.model.backbone,
        "views": d.cache_views,
        "clean": d.cache_clean_views,
        "flip": d.flip,
        "occlusion": to_dict(d.occlusion),
        "mask_root": d.mask_root,
        "seed": cfg.schedule.seed,
    }
    if _with_stage(cfg):  # only then: the key (and the cache) of other runs stay as they were
        desc["stage"] = True
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


@torch.inference_mode()
def compute_views_features(backbone, images: np.ndarray, *, device, batch_size: int, graph=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> feature maps [N, C, H', W'] float16 (CPU), body only. `graph`: the
    backbone's exported graph in ONNX Runtime (`body_graph`), run instead of PyTorch."""
    from occtool.models import preprocess

    out = []
    for s in range(0, len(images), batch_size):
        if graph is not None:
            x = preprocess(images[s: s + batch_size], backbone.input_spec).numpy()
            out.append(torch.from_numpy(graph.run(x)["feature_map"]).to(torch.float16))
            continue
        x = preprocess(images[s: s + batch_size], backbone.input_spec, device=device)
        out.append(backbone.features(x).to("cpu", torch.float16))
    return torch.cat(out) if out else torch.zeros(0)


def _with_stage(cfg) -> bool:
    return bool(getattr(cfg.model, "qaconv_branch", False))


@torch.inference_mode()
def compute_views_split_features(backbone, images: np.ndarray, *, device, batch_size: int,
                                 graph=None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, H, W, 3] -> (stage maps [N, C_s, H', W'], feature maps [N, C, H', W']), float16
    CPU, by `backbone.split_features`, or by `graph`: the body's graph with its stage output in
    ONNX Runtime (`body_graph(..., stage=True)`)."""
    from occtool.models import preprocess
    from occtool.models.export import STAGE_OUTPUT

    stages, maps = [], []
    for s in range(0, len(images), batch_size):
        if graph is not None:
            out = graph.run(preprocess(images[s: s + batch_size], backbone.input_spec).numpy())
            stage, fm = torch.from_numpy(out[STAGE_OUTPUT]), torch.from_numpy(out["feature_map"])
        else:
            stage, fm = backbone.split_features(preprocess(images[s: s + batch_size], backbone.input_spec,
                                                           device=device))
        stages.append(stage.to("cpu", torch.float16))
        maps.append(fm.to("cpu", torch.float16))
    return torch.cat(stages), torch.cat(maps)


def body_graph(backbone, loader, cfg, *, device, weights_desc: str, stage: bool = False):
    """The frozen backbone's exported graph for the feature cache (data.runtime; None: PyTorch),
    kept in `<data.cache_dir>/onnx/` keyed by the weights and the outputs (`stage`: with the stage
    map, for the QAConv branch), checked on the first training images (with `auto`, a body that
    does not export or disagrees runs in PyTorch)."""
    from occtool.models import preprocess
    from occtool.models.export import ExportError
    from occtool.runtime import onnx_graph_for, resolve_runtime

    d = cfg.data
    known = weights_desc != "random"
    if resolve_runtime(d.runtime, device) != "onnxruntime" or (d.runtime == "auto" and not known):
        return None  # auto and random weights: nothing to cache the graph under (as in extract_features)
    n = min(8, len(loader.records))
    check = lambda: preprocess(np.stack([loader.image(i) for i in range(n)]), backbone.input_spec)  # noqa: E731
    try:
        name = f"body-{backbone.name}{'-stage' if stage else ''}-{weights_desc[:20]}"  # never an old graph
        return onnx_graph_for(backbone, check_inputs=check, threads=resolve_threads(d.threads), stage=stage,
                              graph_dir=Path(d.cache_dir) / "onnx" if d.cache_dir and known else None,
                              fingerprint=name if known else None)
    except ExportError:
        if d.runtime == "onnxruntime":
            raise
        return None


def _image_views(loader: ImageLoader, i: int, cfg) -> list[View]:
    """The cached views of image `i` (clean views first, then occluded ones), seeded by the image
    alone: the same views whatever order or thread makes them."""
    d = cfg.data
    rng = view_rng(cfg.schedule.seed, 0x5EED, i)
    views = []
    for v in range(d.cache_views):
        if v < d.cache_clean_views:  # views 0 and 1 stay pristine (the teacher's); later clean ones
            # get occlusion.degrade's image degradations when it is on
            views.append(loader.view(i, rng, occlude=False, flip=(v % 2 == 1) and d.flip, degrade=v >= 2))
        else:
            views.append(loader.view(i, rng, occlude=True))
    return views


def cache_view_stream(loader: ImageLoader, n: int, cfg, *, workers: int,
                      window: int | None = None) -> Iterator[tuple[int, list[View]]]:
    """(i, the cached views of image i) for i = 0..n-1 in order, decoded and occluded by `workers`
    threads (`ordered_map`, at most `window` images ahead), or in this thread with one worker."""
    if workers <= 1:
        return ((i, _image_views(loader, i, cfg)) for i in range(n))
    from occtool.runtime.parallel import ordered_map

    return ordered_map(lambda i: _image_views(loader, i, cfg), range(n), workers=workers, window=window)


@torch.inference_mode()
def _teacher_embeddings(backbone, loader: ImageLoader, fm: torch.Tensor, idx: list[int], cfg, device) -> torch.Tensor:
    """[len(idx), 2, D] embeddings of the clean image and its mirror (from the clean cached views
    when present, else by running the images)."""
    d = cfg.data
    if d.cache_clean_views >= 2 and d.flip and not loader.mask_root:
        pair = fm[idx][:, :2].float().to(device)  # views 0 (clean) and 1 (clean mirror)
        return backbone.embed(pair.flatten(0, 1))[0].float().cpu().view(len(idx), 2, -1)
    from occtool.models import preprocess

    clean = np.stack([loader.image(i) for i in idx])
    both = np.ascontiguousarray(np.concatenate([clean, clean[:, :, ::-1]]))
    emb = backbone(preprocess(both, backbone.input_spec, device=device)).embedding.float().cpu()
    return torch.stack([emb[: len(idx)], emb[len(idx):]], dim=1)


def _empty_cache(backbone, n: int, v_total: int, *, with_stage: bool) -> FeatureCache:
    h, w = backbone.feature_size
    cache = FeatureCache(fm=torch.zeros((n, v_total, backbone.feature_channels, h, w), dtype=torch.float16),
                         fmask=torch.ones((n, v_total, 1, h, w), dtype=torch.float32),
                         has_mask=torch.zeros((n, v_total), dtype=torch.bool),
                         flipped=torch.zeros((n, v_total), dtype=torch.bool),
                         teacher=torch.zeros((n, 2, backbone.embedding_dim), dtype=torch.float32))
    if with_stage:
        cache.stage = torch.zeros((n, v_total, backbone.stage_channels, h, w), dtype=torch.float16)
    return cache


def _fill_cache(cache: FeatureCache, chunk: list[tuple[int, list[View]]], loader, backbone, cfg, *, device, graph,
                batch_size: int) -> None:
    """The cached views of the images of `chunk` ((i, views) pairs): maps (and stage maps),
    visibility, flags, teacher."""
    meta = [(i, v, view) for i, views in chunk for v, view in enumerate(views)]
    imgs = np.stack([view.image for _, _, view in meta])
    if cache.stage is not None:
        stages, maps = compute_views_split_features(backbone, imgs, device=device, batch_size=batch_size, graph=graph)
        for (i, v, _), st in zip(meta, stages):
            cache.stage[i, v] = st
    else:
        maps = compute_views_features(backbone, imgs, device=device, batch_size=batch_size, graph=graph)
    h, w = backbone.feature_size
    for (i, v, view), m in zip(meta, maps):
        cache.fm[i, v] = m
        cache.fmask[i, v, 0] = torch.from_numpy(feature_masks(view.visibility, (h, w)))
        cache.has_mask[i, v] = view.has_mask
        cache.flipped[i, v] = view.flipped
    idx = [i for i, _ in chunk]
    cache.teacher[idx] = _teacher_embeddings(backbone, loader, cache.fm, idx, cfg, device)


def build_feature_cache(
    records: Sequence[ImageRecord],
    loader: ImageLoader,
    backbone,
    cfg,
    *,
    device: torch.device,
    weights_desc: str,
    progress: ProgressFn = None,
    warn: Callable[[str], None] | None = None,
) -> FeatureCache:
    """Compute (or read back from data.cache_dir) the feature cache of `records`. A cache folder
    that cannot be written is not an error: `warn` says so and the run keeps the cache in memory."""
    from occtool.io import check_writable_dir

    d = cfg.data
    v_total = d.cache_views
    if v_total < 1 or not 0 <= d.cache_clean_views <= v_total:
        raise ConfigError("data.cache_views must be >= 1 and 0 <= data.cache_clean_views <= cache_views")
    cache_path = None
    why = check_writable_dir(d.cache_dir) if d.cache_dir else None
    if why is not None and warn is not None:
        warn(f"note: data.cache_dir {d.cache_dir} cannot be written ({why}): the feature cache stays in memory")
    if d.cache_dir and why is None:
        cache_path = Path(d.cache_dir) / f"features-{_cache_key(records, cfg, weights_desc)}"
        got = _load_cache(cache_path)
        if got is not None:
            report(progress, len(records), len(records))
            return got
    backbone.eval()
    cache = _empty_cache(backbone, len(records), v_total, with_stage=_with_stage(cfg))
    bs = max(1, d.cache_batch_size)
    graph = body_graph(backbone, loader, cfg, device=device, weights_desc=weights_desc, stage=cache.stage is not None)
    workers = resolve_threads(cfg.threads)
    # the next chunk's views are made while the network runs on this one
    stream = cache_view_stream(loader, len(records), cfg, workers=workers, window=max(2 * workers, bs))
    try:
        for s in range(0, len(records), bs):
            chunk = list(itertools.islice(stream, bs))
            _fill_cache(cache, chunk, loader, backbone, cfg, device=device, graph=graph, batch_size=bs * 2)
            report(progress, chunk[-1][0] + 1, len(records))
    finally:
        stream.close()
        if graph is not None:
            graph.close()
    if cache_path is not None:
        why = _store_cache(cache_path, cache)
        if why is not None and warn is not None:
            warn(f"note: the feature cache could not be stored in {d.cache_dir} ({why}); the run goes on")
    return cache


CACHE_ARRAYS = ("fm", "fmask", "has_mask", "flipped", "teacher")  # + "stage" when present


def _store_cache(path: Path, cache: FeatureCache) -> str | None:
    """Store atomically (a folder renamed into place); None, or why it could not be stored
    (a full disk leaves no partial cache behind)."""
    import os
    import shutil

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name in CACHE_ARRAYS + (("stage",) if cache.stage is not None else ()):
            np.save(tmp / f"{name}.npy", getattr(cache, name).numpy())
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return exc.strerror or str(exc)
    try:
        if path.exists():
            raise FileExistsError(path)
        os.replace(tmp, path)
    except OSError:  # another process (a DDP rank, a parallel run) stored it first
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def _load_cache(path: Path) -> FeatureCache | None:
    if not path.is_dir():
        return None
    names = CACHE_ARRAYS + (("stage",) if (path / "stage.npy").is_file() else ())
    try:
        arrays = {name: torch.from_numpy(np.load(path / f"{name}.npy", allow_pickle=False)) for name in names}
    except (OSError, ValueError):
        return None
    return FeatureCache(**arrays)


class CachedBatches:
    """Cache-mode batches: each position of the global batch takes a view of its image; copies
    of one image in a batch take different views."""

    def __init__(self, cache: FeatureCache, labels: np.ndarray, *, seed: int):
        self.cache = cache
        self.labels = labels
        self.seed = seed

    def views_for(self, global_indices: Sequence[int], *, epoch: int, step: int) -> list[int]:
        rng = view_rng(self.seed, 0xCAC4E, epoch, step)
        v_total = self.cache.views
        out = [0] * len(global_indices)
        groups: dict[int, list[int]] = {}
        for pos, i in enumerate(global_indices):
            groups.setdefault(int(i), []).append(pos)
        for i in sorted(groups):
            positions = groups[i]
            perm = rng.permutation(v_total)
            while len(perm) < len(positions):
                perm = np.concatenate([perm, rng.permutation(v_total)])
            for pos, v in zip(positions, perm):
                out[pos] = int(v)
        return out

    def load(self, global_batch: Sequence[int], lo: int, hi: int, *, epoch: int, step: int) -> dict:
        views = self.views_for(global_batch, epoch=epoch, step=step)
        idx = torch.as_tensor([int(i) for i in global_batch[lo:hi]], dtype=torch.long)
        vv = torch.as_tensor(views[lo:hi], dtype=torch.long)
        c = self.cache
        flips = c.flipped[idx, vv].long()
        stage = {} if c.stage is None else {"stage_map": c.stage[idx, vv]}  # float16 [b, C_s, H, W]
        return {
            **stage,
            "feature_map": c.fm[idx, vv],  # float16 [b, C, H, W]
            "feature_mask": c.fmask[idx, vv],
            "has_mask": c.has_mask[idx, vv],
            "teacher": c.teacher[idx, flips],
            "labels": torch.from_numpy(self.labels[idx.numpy()]),
            "ids": torch.arange(lo, hi),
        }
