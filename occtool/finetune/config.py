"""`occtool finetune-contrastive` configuration: dataclasses with defaults <- YAML <- CLI options <- --set.

Sections: data / model / degrade / loss / optim / schedule / validation / checkpoint / debug.
Unknown keys are errors (occtool.config); every value is range-checked in `__post_init__`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Optional

from occtool.augment.config import OccluderWeights, SynthesisConfig
from occtool.config import ConfigValueError, check_choice, check_device, check_interval, check_range, check_subset
from occtool.models.registry import list_backbones

DEGRADATION_KINDS = ("occlusion", "low_res", "blur", "jpeg", "noise")  # the registry's names (degrade.py)
TRAINABLE_RE = re.compile(r"^(all|output|last-(\d+)-stages)$")


def _default_occluder_weights() -> OccluderWeights:
    w = {name: 0.0 for name in OccluderWeights().as_dict()}
    w.update(medical_mask=1.0, rectangles=0.25, sunglasses=0.25, hand=0.25, scarf=0.25)
    return OccluderWeights(**w)


@dataclass
class FinetuneOcclusionConfig(SynthesisConfig):
    """Synthetic occlusion of degraded views (augment's occluders and their visibility); every
    view drawn for occlusion is occluded (keep_clean 0: the clean share is `degrade.fraction`)."""

    weights: OccluderWeights = field(default_factory=_default_occluder_weights)
    keep_clean: float = 0.0


@dataclass
class FinetuneDataConfig:
    # Training identity tree root/<identity>/<image> (or an LFW-style root with images/ inside).
    train_root: str = ""
    # People never trained on (nor validated on): those in these folds of a pairs file.
    exclude_pairs_file: Optional[str] = None
    exclude_folds: Optional[str] = None
    min_images: int = 1  # identities with fewer images are dropped before anything else
    max_identities: Optional[int] = None  # keep only the first N identities (debugging, tests)
    p: int = 16  # identities per batch
    k: int = 4  # views per identity (--images-per-subject)
    # Identities with fewer than k images: "replace" repeats their images (each repeat its own
    # flip/degradation), "skip" leaves them out. The numbers are reported.
    few_images: Literal["replace", "skip"] = "replace"
    flip: bool = True  # random horizontal flips

    def __post_init__(self) -> None:
        check_range("min_images", self.min_images, lo=1)
        check_range("max_identities", self.max_identities, lo=1, optional=True)
        check_range("p", self.p, lo=2)
        check_range("k", self.k, lo=2)
        check_choice("few_images", self.few_images, ("replace", "skip"))


@dataclass
class FinetuneModelConfig:
    backbone: str = "mobilefacenet"
    weights: Optional[str] = "default"  # backbone weights file, "default" (shipped) or "none"
    checkpoint: Optional[str] = None  # start from an occtool checkpoint instead (its head/matcher ride along)
    # What trains: "all", "output" (the output layer), or "last-N-stages" (the output layer and
    # the last N blocks of the body; a block = one element of the body's top-level sequences).
    trainable: str = "all"
    freeze_bn: bool = True  # BatchNorm running statistics stay those of the starting model

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, list_backbones())
        if not isinstance(self.trainable, str) or not TRAINABLE_RE.match(self.trainable) or self.trainable == "last-0-stages":
            raise ConfigValueError("trainable", "all, output or last-N-stages with N >= 1", self.trainable)


@dataclass
class LowResConfig:
    size_px: tuple[int, int] = (14, 24)  # side drawn in this range (bicubic down, then back up)

    def __post_init__(self) -> None:
        check_interval("size_px", self.size_px, lo=4)


@dataclass
class BlurConfig:
    sigma_px: tuple[float, float] = (1.0, 3.0)  # Gaussian sigma at 112 px

    def __post_init__(self) -> None:
        check_interval("sigma_px", self.sigma_px, lo=0.0, lo_open=True)


@dataclass
class JpegConfig:
    quality: tuple[int, int] = (10, 40)

    def __post_init__(self) -> None:
        check_interval("quality", self.quality, lo=1, hi=100)


@dataclass
class NoiseConfig:
    std: tuple[float, float] = (5.0, 20.0)  # Gaussian noise, in 8-bit grey levels

    def __post_init__(self) -> None:
        check_interval("std", self.std, lo=0.0)


@dataclass
class DegradationWeights:
    """Relative weights for choosing the one degradation of a degraded view (0 disables one)."""

    occlusion: float = 1.0
    low_res: float = 1.0
    blur: float = 0.0
    jpeg: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in DEGRADATION_KINDS:
            check_range(name, getattr(self, name), lo=0.0)

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in DEGRADATION_KINDS}


@dataclass
class DegradeConfig:
    # Share of each identity's k views that are degraded (rounded; at least one view stays clean
    # and, when > 0, at least one is degraded, so every identity gives clean-degraded positives).
    fraction: float = 0.5
    weights: DegradationWeights = field(default_factory=DegradationWeights)
    occlusion: FinetuneOcclusionConfig = field(default_factory=FinetuneOcclusionConfig)
    low_res: LowResConfig = field(default_factory=LowResConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # A restoration model run on every degraded view (training and validation probes) before the
    # recogniser: TorchScript (.pt/.ts/.jit) or ONNX (.onnx) file; input and output float RGB
    # [B, 3, H, W] in [0, 1] (an output of another size is resized back to H x W).
    restore: Optional[str] = None
    restore_batch_size: int = 32

    def __post_init__(self) -> None:
        check_range("fraction", self.fraction, lo=0.0, hi=1.0)
        if self.fraction > 0 and not any(v > 0 for v in self.weights.as_dict().values()):
            raise ConfigValueError("weights", "at least one degradation weight > 0 (fraction > 0)", self.weights.as_dict())
        check_range("restore_batch_size", self.restore_batch_size, lo=1)


@dataclass
class FinetuneLossConfig:
    temperature: float = 0.07  # supervised contrastive (InfoNCE) temperature
    distill: float = 0.0  # weight of the anchor: 1 - cos(student(view), frozen start(clean view))

    def __post_init__(self) -> None:
        check_range("temperature", self.temperature, lo=0.0, lo_open=True)
        check_range("distill", self.distill, lo=0.0)


@dataclass
class FinetuneOptimConfig:
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    grad_clip: Optional[float] = 5.0  # max global gradient norm; null: none
    amp: bool = False  # CUDA float16 autocast

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        check_range("lr", self.lr, lo=0.0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0.0)
        check_range("momentum", self.momentum, lo=0.0, hi=1.0)
        check_range("grad_clip", self.grad_clip, lo=0.0, lo_open=True, optional=True)


@dataclass
class FinetuneScheduleConfig:
    epochs: int = 3
    steps_per_epoch: Optional[int] = None  # None: one pass over the identities (P per batch)
    warmup_steps: int = 0
    scheduler: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine: final lr / lr
    seed: int = 0
    log_every: int = 10
    max_nonfinite: int = 5

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, lo=1)
        check_range("steps_per_epoch", self.steps_per_epoch, lo=1, optional=True)
        check_range("warmup_steps", self.warmup_steps, lo=0)
        check_choice("scheduler", self.scheduler, ("constant", "cosine"))
        check_range("min_lr_ratio", self.min_lr_ratio, lo=0.0, hi=1.0)
        check_range("log_every", self.log_every, lo=1)
        check_range("max_nonfinite", self.max_nonfinite, lo=1)


@dataclass
class FinetuneValidationConfig:
    """Validation on training people held out from training (before training and every epoch)."""

    enabled: bool = True  # (the best-epoch rule and the refusal need it)
    root: Optional[str] = None  # a separate held-out identity tree instead of held-out training people
    holdout_identities: int = 200  # training people with >= 2 images held out (when root is None)
    seed: int = 0  # which people are held out, and the probes' degradations
    probes_per_identity: int = 4  # at most this many probes per held-out person (gallery: their first image)
    probe_kinds: list[str] = field(default_factory=lambda: ["occlusion", "low_res"])  # degraded probe sets
    # Best epoch: the highest mean degraded rank-1 among epochs whose clean rank-1 is at most
    # `clean_margin` points below the starting model's; no epoch better than the start: refusal.
    clean_margin: float = 0.5
    batch_size: int = 64
    every_epochs: int = 1

    def __post_init__(self) -> None:
        check_range("holdout_identities", self.holdout_identities, lo=0)
        check_range("probes_per_identity", self.probes_per_identity, lo=1)
        check_subset("probe_kinds", self.probe_kinds, DEGRADATION_KINDS, allow_empty=False)
        check_range("clean_margin", self.clean_margin, lo=0.0)
        check_range("batch_size", self.batch_size, lo=1)
        check_range("every_epochs", self.every_epochs, lo=1)


@dataclass
class FinetuneCheckpointConfig:
    every_steps: int = 0  # 0: only at epoch ends
    every_epochs: int = 1
    keep_last: int = 2

    def __post_init__(self) -> None:
        check_range("every_steps", self.every_steps, lo=0)
        check_range("every_epochs", self.every_epochs, lo=0)
        check_range("keep_last", self.keep_last, lo=1)


@dataclass
class FinetuneDebugConfig:
    nonfinite_steps: list[int] = field(default_factory=list)  # inject a NaN loss at these steps
    stop_after_steps: Optional[int] = None  # end as if interrupted after N steps


@dataclass
class FinetuneConfig:
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    loss: FinetuneLossConfig = field(default_factory=FinetuneLossConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    schedule: FinetuneScheduleConfig = field(default_factory=FinetuneScheduleConfig)
    validation: FinetuneValidationConfig = field(default_factory=FinetuneValidationConfig)
    checkpoint: FinetuneCheckpointConfig = field(default_factory=FinetuneCheckpointConfig)
    debug: FinetuneDebugConfig = field(default_factory=FinetuneDebugConfig)
    device: str = "auto"
    threads: int = 0  # torch threads; 0: torch's default

    def __post_init__(self) -> None:
        check_device("device", self.device)
        check_range("threads", self.threads, lo=0)
