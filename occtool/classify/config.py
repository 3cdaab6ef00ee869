"""Configs of `occtool classify train` and `occtool classify predict` (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from occtool.errors import ConfigError

ROUTES = ("fast", "mask_aware", "slow")


def _check(ok: bool, key: str, allowed: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {allowed}, got {value!r}")


@dataclass
class ClassifyTrainConfig:
    data: str = ""  # augment output folder (its manifest.jsonl), a manifest file, or a class tree
    extra_data: list[str] = field(default_factory=list)  # more sources, training faces only (their validation/test people are dropped)
    test_pairs_file: str = ""  # LFW pairs.txt: people of test_folds are the test set (scored once, at the end)
    test_folds: str = "6-10"
    test_people: list[str] = field(default_factory=list)  # further test identities (by name)
    val_holdout_people: int = 200  # validation = this many training-side people (seeded by val_seed), never trained on
    val_seed: int = 0
    val_people: list[str] = field(default_factory=list)  # further validation identities (by name)
    arch: str = "mfn_ms_head"  # see occtool.classify.list_classifiers()
    backbone_weights: str = "default"  # "default", "none" or a weights file (see create_classifier)
    head_width: int = 64  # mfn heads: channels of the 1x1 conv
    flip_average: bool = False  # the model averages the logits of the face and its mirror (2x the classifier's cost)
    epochs: int = 30
    patience: int = 5  # stop after this many epochs without a better validation accuracy
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "constant"  # "constant" or "cosine" (per epoch, down to lr / 100 at the last epoch)
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    flip: bool = True  # train on horizontal flips too
    trunk_runtime: str = "onnx"  # frozen trunk's cache on CPU: "onnx" (onnxruntime, faster) or "torch"
    cache_dir: str = ""  # keep the frozen trunk's outputs here, reused by runs on the same data ("": off)
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: leave torch's setting)
    device: str = "auto"

    def __post_init__(self) -> None:
        _check(self.val_holdout_people >= 0, "val_holdout_people", ">= 0", self.val_holdout_people)
        _check(1 <= self.head_width <= 1024, "head_width", "in [1, 1024]", self.head_width)
        _check(self.flip or not self.flip_average, "flip_average", "false when flip is false (the mirror view is not cached)", self.flip_average)
        _check(self.epochs >= 1, "epochs", ">= 1", self.epochs)
        _check(self.patience >= 1, "patience", ">= 1", self.patience)
        _check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _check(self.lr > 0, "lr", "> 0", self.lr)
        _check(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        _check(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)", self.label_smoothing)
        _check(self.threads >= 0, "threads", ">= 0", self.threads)
        _check(self.lr_schedule in ("constant", "cosine"), "lr_schedule", "'constant' or 'cosine'", self.lr_schedule)
        _check(self.trunk_runtime in ("onnx", "torch"), "trunk_runtime", "'onnx' or 'torch'", self.trunk_runtime)


@dataclass
class Routes:
    """The processing path of each class."""

    none: str = "fast"
    opaque: str = "mask_aware"
    transparent: str = "slow"

    def as_dict(self) -> dict[str, str]:
        return {"none": self.none, "opaque": self.opaque, "transparent": self.transparent}


@dataclass
class PathCosts:
    """Seconds per frame of each processing path (the seed note's 0.5 / 0.6 / 3 s)."""

    fast: float = 0.5
    mask_aware: float = 0.6
    slow: float = 3.0


@dataclass
class PredictConfig:
    min_confidence: float = 0.5  # below it a face takes fallback_route
    fallback_route: str = "mask_aware"
    routes: Routes = field(default_factory=Routes)
    costs: PathCosts = field(default_factory=PathCosts)
    every: int = 1  # video: classify every N-th frame
    batch_size: int = 32
    margin: float = 0.3
    score_threshold: float = 0.5  # detector
    max_faces: int = 0  # detector: keep at most this many faces per frame (0: all)
    threads: int = 0  # intra-op threads of the classifier and the detector (0: OMP_NUM_THREADS, else the cores)
    runtime: str = "auto"  # torch | onnxruntime | auto: classifier and detector (occtool.classify.runtime)
    graph_dir: str = ""  # exported graphs of model.pt and the detector ("": <feature cache>/onnx)

    def __post_init__(self) -> None:
        _check(0 <= self.min_confidence <= 1, "min_confidence", "in [0, 1]", self.min_confidence)
        _check(self.fallback_route in ROUTES, "fallback_route", f"one of {', '.join(ROUTES)}", self.fallback_route)
        for cls, route in self.routes.as_dict().items():
            _check(route in ROUTES, f"routes.{cls}", f"one of {', '.join(ROUTES)}", route)
        for name in ROUTES:
            cost = getattr(self.costs, name)
            _check(isinstance(cost, (int, float)) and cost >= 0, f"costs.{name}", "seconds >= 0", cost)
        _check(self.every >= 1, "every", ">= 1", self.every)
        _check(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _check(0 <= self.margin <= 2, "margin", "in [0, 2]", self.margin)
        _check(0 < self.score_threshold < 1, "score_threshold", "in (0, 1)", self.score_threshold)
        _check(self.max_faces >= 0, "max_faces", ">= 0", self.max_faces)
        _check(self.threads >= 0, "threads", ">= 0", self.threads)
        _check(self.runtime in ("torch", "onnxruntime", "auto"), "runtime", "one of torch, onnxruntime, auto", self.runtime)
