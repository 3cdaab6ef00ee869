"""Training of the occlusion-type classifier: early stopping on validation accuracy, exact resume.

Three disjoint sets of people (`occtool.classify.data.Split`): training, validation (seeded
training-side people: early stopping and every recipe choice) and test (e.g. the people of LFW
folds 6-10: scored once, at the end, by the best model).

A classifier with a frozen trunk (mfn_head, mfn_ms_head) is trained on cached trunk outputs (computed
once, with the horizontal flip as a second view), so an epoch costs only the head; the others are
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
from occtool.classify.data import Sample, Split, class_counts, load_crops, load_samples, split_samples
from occtool.classify.geometry import to_input
from occtool.classify.models import CLASSES, OcclusionClassifier, create_classifier
from occtool.errors import CheckpointError, DataError
from occtool.progress import ProgressFn, report

LogFn = Callable[[str], None]
_CHUNK = 64  # images decoded and pushed through a frozen trunk at once


def _to_tensor(crops: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(to_input(crops)).to(device)


def _trunk_outputs(samples: Sequence[Sample], views: int, trunk_fn, tick: Callable[[int], None]) -> torch.Tensor:
    """float16 [N, V, ...] trunk outputs of samples; view 1 (when V = 2) is the horizontal mirror."""
    out = []
    for lo in range(0, len(samples), _CHUNK):
        crops = load_crops(samples[lo: lo + _CHUNK])
        per_view = [trunk_fn(to_input(np.ascontiguousarray(c))).half()
                    for c in ([crops, crops[:, :, ::-1]] if views == 2 else [crops])]
        out.append(torch.stack(per_view, 1))
        tick(len(crops))
    return torch.cat(out)


class _FeatureSource:
    """Cached frozen-trunk outputs: pool [N, V, ...] float16 (training + validation faces, V = 2 with
    flips), test [M, V', ...] (V' = 2 for flip_average); training batches pick a random view."""

    def __init__(self, pool: torch.Tensor, test: torch.Tensor, split: Split, device) -> None:
        self.pool, self.test, self.device = pool, test, device
        self.train_rows = torch.from_numpy(split.rows("train"))
        self.val_rows = torch.from_numpy(split.rows("validation"))

    def train_batch(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        views = rng.integers(0, self.pool.shape[1], size=len(idx))
        return self.pool[self.train_rows[torch.from_numpy(idx)], torch.from_numpy(views)].float().to(self.device)

    def eval_batches(self, part: str, batch_size: int) -> Iterator[torch.Tensor]:
        """[B, V, ...] (every cached view) of the "validation" or "test" faces."""
        n = len(self.val_rows) if part == "validation" else len(self.test)
        for lo in range(0, n, batch_size):
            x = self.pool[self.val_rows[lo: lo + batch_size]] if part == "validation" else self.test[lo: lo + batch_size]
            yield x.float().to(self.device)

    @staticmethod
    def logits(model: OcclusionClassifier, x: torch.Tensor) -> torch.Tensor:
        return model.classify_features(x)

    @staticmethod
    def eval_logits(model: OcclusionClassifier, x: torch.Tensor) -> torch.Tensor:
        """As model.forward on the images: view 0, or the mean over the face and its mirror."""
        if model.flip_average:
            return 0.5 * (model.classify_features(x[:, 0]) + model.classify_features(x[:, 1]))
        return model.classify_features(x[:, 0])


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
    """Crops decoded per batch (random horizontal flip); validation crops kept in memory, test
    crops decoded when scored."""

    def __init__(self, split: Split, *, flip: bool, device) -> None:
        pool = split.pool
        self.samples = [pool[i] for i in split.rows("train")]
        self.test, self.flip, self.device = list(split.test), flip, device
        self.val = load_crops([pool[i] for i in split.rows("validation")])

    def train_batch(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        crops = load_crops([self.samples[i] for i in idx])
        if self.flip:
            flips = rng.random(len(crops)) < 0.5
            crops[flips] = crops[flips][:, :, ::-1]
        return _to_tensor(crops, self.device)

    def eval_batches(self, part: str, batch_size: int) -> Iterator[torch.Tensor]:
        n = len(self.val) if part == "validation" else len(self.test)
        for lo in range(0, n, batch_size):
            crops = self.val[lo: lo + batch_size] if part == "validation" else load_crops(self.test[lo: lo + batch_size])
            yield _to_tensor(crops, self.device)

    @staticmethod
    def logits(model: OcclusionClassifier, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    eval_logits = logits


def _predict(model, source, part: str, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices of the "validation" or "test" faces."""
    model.eval()
    preds = []
    with torch.inference_mode():
        for x in source.eval_batches(part, batch_size):
            preds.append(source.eval_logits(model, x).argmax(1).cpu().numpy())
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


def _split(cfg: ClassifyTrainConfig) -> Split:
    """Training / validation / test faces per the config (see `occtool.classify.data.Split`)."""
    from occtool.training.data import excluded_people

    sources = [load_samples(cfg.data)] + [load_samples(extra) for extra in cfg.extra_data]
    test_people = excluded_people(cfg.test_pairs_file or None, cfg.test_folds if cfg.test_pairs_file else None)
    test_people |= set(cfg.test_people)
    split = split_samples(sources, test_people=test_people, val_count=cfg.val_holdout_people, val_seed=cfg.val_seed,
                          val_named=cfg.val_people)
    if not len(split.rows("validation")):
        raise DataError("no validation faces: set val_holdout_people >= 1 or val_people to training-side people of --data")
    train = [split.pool[i] for i in split.rows("train")]
    if not train:
        raise DataError("no training faces: every identity of the data is a validation or test person")
    missing = [c for c, n in class_counts(train).items() if n == 0]
    if missing:
        raise DataError(f"the training data has no {', '.join(missing)} faces; all of {', '.join(CLASSES)} are needed")
    return split


def _cache_path(cfg, model: OcclusionClassifier, samples: Sequence[Sample], views: int) -> Path:
    """The cache file of samples' trunk outputs, named by a hash of everything they depend on:
    the trunk (arch and weights), the views and the sample list with labels."""
    import hashlib

    h = hashlib.sha256(f"{model.arch}|views={views}|".encode())
    for k, v in sorted(model.trunk.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    h.update("|".join(f"{s.path}:{s.label}" for s in samples).encode())
    return Path(cfg.cache_dir) / f"classify-features-{h.hexdigest()[:20]}.pt"


def _trunk_outputs_cached(cfg, model, samples: Sequence[Sample], views: int, trunk_fn, tick, log) -> torch.Tensor:
    """`_trunk_outputs`, read from / written to cfg.cache_dir when it is set."""
    from occtool.io import atomic_save

    if not samples:
        return torch.zeros((0, views), dtype=torch.float16)
    path = _cache_path(cfg, model, samples, views) if cfg.cache_dir else None
    if path is not None and path.is_file():
        log(f"feature cache: {path} ({len(samples)} faces)")
        tick(len(samples))
        return torch.load(path, map_location="cpu", weights_only=True)["features"]
    feats = _trunk_outputs(list(samples), views, trunk_fn(), tick)
    if path is not None:
        atomic_save(path, lambda tmp: torch.save({"features": feats}, tmp))
    return feats


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


def _feature_source(cfg, split: Split, model, device, out_dir: Path, progress, log):
    """A frozen trunk's outputs computed once (ONNX Runtime on CPU when asked; cached per data
    source and part in cfg.cache_dir), else the images themselves."""
    if not model.frozen_trunk:
        return _ImageSource(split, flip=cfg.flip, device=device)
    log(f"frozen {model.arch} trunk's outputs ({'2 views' if cfg.flip else '1 view'} for training, {cfg.trunk_runtime})")
    parts = [(list(pool), 2 if cfg.flip else 1) for pool in split.pools] + [(list(split.test), 2 if cfg.flip_average else 1)]
    total, done = sum(len(p) for p, _ in parts), [0]
    fns: list = []

    def tick(n: int) -> None:
        done[0] += n
        report(progress, done[0], total)

    def trunk_fn():  # built on first need: a fully cached run exports nothing
        if not fns:
            if cfg.trunk_runtime == "onnx" and device.type == "cpu":
                fns.append(_onnx_trunk_fn(model, out_dir, cfg.threads))
            else:
                def run(x: np.ndarray) -> torch.Tensor:
                    with torch.inference_mode():
                        return model.features(torch.from_numpy(x).to(device)).cpu()
                fns.append(run)
        return fns[0]

    feats = [_trunk_outputs_cached(cfg, model, p, v, trunk_fn, tick, log) for p, v in parts]
    pool = feats[0] if len(feats) == 2 else torch.cat(feats[:-1])
    return _FeatureSource(pool, feats[-1], split, device)


def _run_epoch(state: dict, model, source, labels, val_labels, optimizer, criterion, cfg, out_dir: Path, log) -> None:
    """One epoch, its validation, the best model (early stopping counts) and the resumable checkpoint."""
    t0, c0 = time.perf_counter(), time.process_time()
    epoch = state["epoch"] + 1
    loss = _train_epoch(model, source, labels, optimizer, criterion, cfg, epoch)
    acc = float((_predict(model, source, "validation") == val_labels).mean())
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


def _split_summary(cfg, split: Split) -> dict:
    """Face counts per class and people per part, for metrics.json and the log."""
    pool = split.pool
    parts = {"train": [pool[i] for i in split.rows("train")], "validation": [pool[i] for i in split.rows("validation")],
             "test": list(split.test)}
    summary = {name: class_counts(faces) for name, faces in parts.items()}
    summary.update({f"{name}_identities": len({s.identity for s in faces}) for name, faces in parts.items()})
    summary["split"] = {"val_holdout_people": cfg.val_holdout_people, "val_seed": cfg.val_seed,
                        "test_pairs_file": cfg.test_pairs_file, "test_folds": cfg.test_folds if cfg.test_pairs_file else "",
                        "sources": 1 + len(cfg.extra_data)}
    return summary


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.label for s in samples], np.int64)


def _final_reports(out_dir: Path, source, split: Split, device) -> dict:
    """The best model's classification reports: validation, and the test people scored once here."""
    from occtool.evaluation.classification import classification_report

    best = load_classifier(out_dir / "model.pt").model.to(device)
    pool = split.pool
    val_labels = _labels([pool[i] for i in split.rows("validation")])
    reports = {"validation": classification_report(val_labels, _predict(best, source, "validation"), CLASSES), "test": None}
    if split.test:
        reports["test"] = classification_report(_labels(split.test), _predict(best, source, "test"), CLASSES)
    return reports


def _model_and_optimizer(cfg: ClassifyTrainConfig, device):
    torch.manual_seed(cfg.seed)
    weights = None if cfg.backbone_weights == "none" else cfg.backbone_weights
    model = create_classifier(cfg.arch, backbone_weights=weights, head_width=cfg.head_width, flip_average=cfg.flip_average).to(device)
    return model, torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_classifier(
    cfg: ClassifyTrainConfig, out_dir: str | Path, *, resume: bool = False, progress: ProgressFn = None, log: LogFn | None = None
) -> dict:
    """Train per `cfg` into `out_dir` (model.pt, checkpoint.pt, history.csv, metrics.json).

    Early stopping and the best epoch use the validation people only; the test people (when the
    config names any) are scored once, by the best model, at the end. Returns the metrics:
    `validation` and `test` reports (accuracy, confusion, per-class precision/recall), data
    counts, epochs, wall and CPU seconds (feature cache and training).
    """
    from occtool.device import resolve_device
    from occtool.io import atomic_write_json

    log = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    device = resolve_device(cfg.device)
    split = _split(cfg)
    summary = _split_summary(cfg, split)
    log("data: " + ", ".join(f"{p} {sum(summary[p].values())} faces of {summary[p + '_identities']} people {summary[p]}"
                             for p in ("train", "validation", "test")))
    model, optimizer = _model_and_optimizer(cfg, device)
    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "seconds": 0.0, "cpu_seconds": 0.0}
    if resume:
        state.update(_resume_state(out_dir, model, optimizer))
        log(f"resumed after epoch {state['epoch']} (best validation accuracy {state['best_accuracy']:.4f})")
    pool = split.pool
    labels = _labels([pool[i] for i in split.rows("train")])
    val_labels = _labels([pool[i] for i in split.rows("validation")])
    source = _feature_source(cfg, split, model, device, out_dir, progress, log)
    cache_s, cache_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stopped_early = False
    while state["epoch"] < cfg.epochs:
        if state["bad_epochs"] >= cfg.patience:
            stopped_early = True
            break
        _run_epoch(state, model, source, labels, val_labels, optimizer, criterion, cfg, out_dir, log)
        report(progress, state["epoch"], cfg.epochs)
    metrics = {
        **_final_reports(out_dir, source, split, device),
        "data": summary,
        "arch": cfg.arch,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stopped_early": stopped_early or state["bad_epochs"] >= cfg.patience,
        "history": state["history"],
        **_times(state, cache_s, cache_cpu, wall0, cpu0),
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _times(state: dict, cache_s: float, cache_cpu: float, wall0: float, cpu0: float) -> dict:
    """Wall and CPU seconds of the trunk cache, the epochs (all runs of a resumed training) and this run."""
    return {
        "seconds": {"cache": round(cache_s, 2), "train": round(state["seconds"], 2),
                    "total_this_run": round(time.perf_counter() - wall0, 2)},
        "cpu_seconds": {"cache": round(cache_cpu, 2), "train": round(state["cpu_seconds"], 2),
                        "total_this_run": round(time.process_time() - cpu0, 2)},
        "torch_threads": torch.get_num_threads(),
    }
