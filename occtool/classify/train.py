"""Training of the occlusion-type classifier: early stopping on validation accuracy, exact resume.

A classifier with a frozen trunk (mfn_head) is trained on cached trunk outputs (computed once,
with the horizontal flip as a second view), so an epoch costs only the head; the others are
trained end to end on crops loaded per batch. Every epoch writes `checkpoint.pt` (latest,
with the optimiser: `--resume` continues exactly) and, when validation accuracy improves,
`model.pt` (the best model, what export and predict use).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from occtool.classify.checkpoint import load_classifier, save_classifier
from occtool.classify.config import ClassifyTrainConfig
from occtool.classify.data import Sample, class_counts, load_crops, load_samples, split_by_people
from occtool.classify.geometry import to_input
from occtool.classify.models import CLASSES, OcclusionClassifier, create_classifier
from occtool.errors import CheckpointError, DataError
from occtool.progress import ProgressFn, report

LogFn = Callable[[str], None]
_CHUNK = 64  # images decoded and pushed through a frozen trunk at once


def _to_tensor(crops: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(to_input(crops)).to(device)


class _FeatureSource:
    """Cached trunk outputs: train [N, V, ...] float16 (V = 1 or 2 views: flip), val [M, ...]."""

    def __init__(self, model, train: Sequence[Sample], val: Sequence[Sample], *, flip: bool, device, progress: ProgressFn,
                 trunk_fn: Callable[[np.ndarray], torch.Tensor] | None = None):
        total = len(train) + len(val)
        done = [0]
        if trunk_fn is None:
            def trunk_fn(x: np.ndarray) -> torch.Tensor:
                with torch.inference_mode():
                    return model.features(torch.from_numpy(x).to(device)).cpu()

        def extract(samples, views):
            out = []
            for lo in range(0, len(samples), _CHUNK):
                crops = load_crops(samples[lo: lo + _CHUNK])
                per_view = [trunk_fn(to_input(np.ascontiguousarray(c))).half()
                            for c in ([crops, crops[:, :, ::-1]] if views == 2 else [crops])]
                out.append(torch.stack(per_view, 1))
                done[0] += len(crops)
                report(progress, done[0], total)
            return torch.cat(out)

        self.train = extract(list(train), 2 if flip else 1)
        self.val = extract(list(val), 1)[:, 0]
        self.device = device

    def train_batch(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        views = rng.integers(0, self.train.shape[1], size=len(idx))
        return self.train[torch.from_numpy(idx), torch.from_numpy(views)].float().to(self.device)

    def val_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for lo in range(0, len(self.val), batch_size):
            yield self.val[lo: lo + batch_size].float().to(self.device)

    @staticmethod
    def logits(model: OcclusionClassifier, x: torch.Tensor) -> torch.Tensor:
        return model.classify_features(x)


def _onnx_trunk_fn(model: OcclusionClassifier, workdir: Path, threads: int):
    """The frozen trunk exported to ONNX and run with onnxruntime (3-4x faster than PyTorch on
    CPU for MobileFaceNet's depthwise convolutions); float32 [B, 3, 224, 224] -> torch tensor."""
    import tempfile
    import warnings

    from occtool.classify.export import onnx_session

    with tempfile.TemporaryDirectory(dir=workdir, prefix=".trunk-") as tmp:
        path = Path(tmp) / "trunk.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.trunk.cpu().eval(), (torch.zeros(1, 3, 224, 224),), str(path), input_names=["input"],
                              output_names=["features"], dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                              opset_version=17, dynamo=False)
        session = onnx_session(path, threads=threads)

    def run(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(session.run(["features"], {"input": x})[0])

    return run


class _ImageSource:
    """Crops decoded per batch (random horizontal flip); validation crops kept in memory."""

    def __init__(self, train: Sequence[Sample], val: Sequence[Sample], *, flip: bool, device):
        self.samples, self.flip, self.device = list(train), flip, device
        self.val = load_crops(list(val))

    def train_batch(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        crops = load_crops([self.samples[i] for i in idx])
        if self.flip:
            flips = rng.random(len(crops)) < 0.5
            crops[flips] = crops[flips][:, :, ::-1]
        return _to_tensor(crops, self.device)

    def val_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        for lo in range(0, len(self.val), batch_size):
            yield _to_tensor(self.val[lo: lo + batch_size], self.device)

    @staticmethod
    def logits(model: OcclusionClassifier, x: torch.Tensor) -> torch.Tensor:
        return model(x)


def _validate(model, source, batch_size: int) -> np.ndarray:
    model.eval()
    preds = []
    with torch.inference_mode():
        for x in source.val_batches(batch_size):
            preds.append(source.logits(model, x).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def epoch_lr(cfg: ClassifyTrainConfig, epoch: int) -> float:
    """Learning rate of epoch 1..epochs: constant, or cosine from lr down to lr / 100."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = (epoch - 1) / max(cfg.epochs - 1, 1)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * t)))


def _train_epoch(model, source, labels: np.ndarray, optimizer, criterion, cfg, epoch: int) -> float:
    model.train()
    for group in optimizer.param_groups:  # a function of the epoch: resume needs no scheduler state
        group["lr"] = epoch_lr(cfg, epoch)
    torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: same draws on resume
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(len(labels))
    total, count = 0.0, 0
    for lo in range(0, len(order), cfg.batch_size):
        idx = order[lo: lo + cfg.batch_size]
        x = source.train_batch(idx, rng)
        y = torch.from_numpy(labels[idx]).to(x.device)
        loss = criterion(source.logits(model, x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def _split(cfg: ClassifyTrainConfig) -> tuple[list[Sample], list[Sample]]:
    from occtool.training.data import excluded_people

    samples = load_samples(cfg.data)
    val_people = excluded_people(cfg.val_pairs_file or None, cfg.val_folds if cfg.val_pairs_file else None)
    val_people |= set(cfg.val_people)
    train, val = split_by_people(samples, val_people)
    if not val:
        raise DataError("no validation faces: set val_pairs_file (+ val_folds) or val_people to people present in the data")
    if not train:
        raise DataError("no training faces: every identity of the data is a validation person")
    missing = [c for c, n in class_counts(train).items() if n == 0]
    if missing:
        raise DataError(f"the training data has no {', '.join(missing)} faces; all of {', '.join(CLASSES)} are needed")
    return train, val


def _cached_features(cfg, model, train, val, device, progress, trunk_fn, log) -> "_FeatureSource":
    """_FeatureSource, kept in cfg.cache_dir (when set) under a key of everything it depends on:
    the trunk's weights, the sample lists and labels, flip."""
    import hashlib

    if not cfg.cache_dir:
        return _FeatureSource(model, train, val, flip=cfg.flip, device=device, progress=progress, trunk_fn=trunk_fn)
    from occtool.io import atomic_save

    h = hashlib.sha256(f"{model.arch}|{cfg.flip}|".encode())
    for k, v in sorted(model.trunk.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    for part in (train, val):
        h.update("|".join(f"{s.path}:{s.label}" for s in part).encode() + b"#")
    path = Path(cfg.cache_dir) / f"classify-features-{h.hexdigest()[:20]}.pt"
    source = _FeatureSource.__new__(_FeatureSource)
    if path.is_file():
        log(f"feature cache: {path}")
        data = torch.load(path, map_location="cpu", weights_only=True)
        source.train, source.val, source.device = data["train"], data["val"], device
        return source
    source = _FeatureSource(model, train, val, flip=cfg.flip, device=device, progress=progress, trunk_fn=trunk_fn)
    atomic_save(path, lambda tmp: torch.save({"train": source.train, "val": source.val}, tmp))
    return source


def _resume_state(out_dir: Path, model: OcclusionClassifier, optimizer) -> dict:
    path = out_dir / "checkpoint.pt"
    loaded = load_classifier(path)
    if loaded.model.arch != model.arch:
        raise CheckpointError(f"{path}: holds a {loaded.model.arch} classifier, the config asks for {model.arch}")
    state = loaded.extra.get("train_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: has no training state to resume from")
    model.load_state_dict(loaded.model.state_dict())
    optimizer.load_state_dict(state["optimizer"])
    return state


def _write_history(out_dir: Path, history: list[dict]) -> None:
    from occtool.io import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", "train_loss", "val_accuracy", "seconds"])
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out_dir / "history.csv", buf.getvalue())


def _feature_source(cfg, model, train, val, device, out_dir: Path, progress, log):
    """A frozen trunk's outputs cached once (ONNX Runtime on CPU when asked), else the images."""
    if not model.frozen_trunk:
        return _ImageSource(train, val, flip=cfg.flip, device=device)
    log(f"caching the frozen {model.arch} trunk's outputs ({'2 views' if cfg.flip else '1 view'}, {cfg.trunk_runtime})")
    trunk_fn = None
    if cfg.trunk_runtime == "onnx" and device.type == "cpu":
        trunk_fn = _onnx_trunk_fn(model, out_dir, cfg.threads)
    return _cached_features(cfg, model, train, val, device, progress, trunk_fn, log)


def _run_epoch(state: dict, model, source, labels, val_labels, optimizer, criterion, cfg, out_dir: Path, log) -> None:
    """One epoch, its validation, the best model (early stopping counts) and the resumable checkpoint."""
    t0, c0 = time.perf_counter(), time.process_time()
    epoch = state["epoch"] + 1
    loss = _train_epoch(model, source, labels, optimizer, criterion, cfg, epoch)
    acc = float((_validate(model, source, 256) == val_labels).mean())
    seconds = time.perf_counter() - t0
    state["history"].append({"epoch": epoch, "train_loss": round(loss, 6), "val_accuracy": round(acc, 6), "seconds": round(seconds, 2)})
    state.update(epoch=epoch, seconds=state["seconds"] + seconds, cpu_seconds=state["cpu_seconds"] + time.process_time() - c0)
    if acc > state["best_accuracy"]:
        state.update(best_accuracy=acc, best_epoch=epoch, bad_epochs=0)
        save_classifier(out_dir / "model.pt", model=model, config=cfg, extra={"epoch": epoch, "val_accuracy": acc})
    else:
        state["bad_epochs"] += 1
    save_classifier(out_dir / "checkpoint.pt", model=model, config=cfg,
                    extra={"train_state": {**state, "optimizer": optimizer.state_dict()}})
    _write_history(out_dir, state["history"])
    log(f"epoch {epoch}: loss {loss:.4f}, validation accuracy {acc:.4f} ({seconds:.1f}s)")


def train_classifier(
    cfg: ClassifyTrainConfig, out_dir: str | Path, *, resume: bool = False, progress: ProgressFn = None, log: LogFn | None = None
) -> dict:
    """Train per `cfg` into `out_dir` (model.pt, checkpoint.pt, history.csv, metrics.json).

    Returns the metrics: validation report of the best model (accuracy, confusion, per-class
    precision/recall), data counts, epochs, wall and CPU seconds (feature cache and training).
    """
    from occtool.device import resolve_device
    from occtool.evaluation.classification import classification_report
    from occtool.io import atomic_write_json

    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    device = resolve_device(cfg.device)
    train, val = _split(cfg)
    log(f"data: {len(train)} training faces {class_counts(train)}, {len(val)} validation faces {class_counts(val)}")
    torch.manual_seed(cfg.seed)
    weights = None if cfg.backbone_weights == "none" else cfg.backbone_weights
    model = create_classifier(cfg.arch, backbone_weights=weights).to(device)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "seconds": 0.0, "cpu_seconds": 0.0}
    if resume:
        state.update(_resume_state(out_dir, model, optimizer))
        log(f"resumed after epoch {state['epoch']} (best validation accuracy {state['best_accuracy']:.4f})")
    labels = np.array([s.label for s in train], np.int64)
    val_labels = np.array([s.label for s in val], np.int64)
    source = _feature_source(cfg, model, train, val, device, out_dir, progress, log)
    cache_s, cache_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stopped_early = False
    while state["epoch"] < cfg.epochs:
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break
        _run_epoch(state, model, source, labels, val_labels, optimizer, criterion, cfg, out_dir, log)
        report(progress, state["epoch"], cfg.epochs)
    best = load_classifier(out_dir / "model.pt").model.to(device)
    metrics = {
        "validation": classification_report(val_labels, _validate(best, source, 256), CLASSES),
        "data": {"train": class_counts(train), "validation": class_counts(val),
                 "train_identities": len({s.identity for s in train}), "validation_identities": len({s.identity for s in val})},
        "arch": cfg.arch,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": stopped_early or state["bad_epochs"] >= cfg.patience,
        "history": state["history"],
        "seconds": {"cache": round(cache_s, 2), "train": round(state["seconds"], 2),
                    "total_this_run": round(time.perf_counter() - wall0, 2)},
        "cpu_seconds": {"cache": round(cache_cpu, 2), "train": round(state["cpu_seconds"], 2),
                        "total_this_run": round(time.process_time() - cpu0, 2)},
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
