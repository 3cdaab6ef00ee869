"""`occtool train` configuration: dataclasses with defaults <- YAML <- CLI options <- --set.

Sections: data / model / loss / optim / schedule / validation / test / checkpoint / debug.
Every key is documented next to its default; unknown keys are errors (occtool.config), and every
value is range-checked by its section's `__post_init__` (ConfigError naming the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from occtool.augment.config import OCCLUDER_NAMES, OccluderWeights, SynthesisConfig
from occtool.config import ConfigValueError, check_choice, check_device, check_range, check_subset
from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT
from occtool.models.registry import has_default_weights, list_backbones


def _medical_only_weights() -> OccluderWeights:
    zero = {name: 0.0 for name in OccluderWeights().as_dict()}
    zero["medical_mask"] = 1.0
    return OccluderWeights(**zero)


# Subclasses only to carry their own defaults: the config loader rebuilds a nested section from
# its class's defaults, so `--set validation.probe_occlusion.keep_clean=0` keeps medical masks.
@dataclass
class TrainOcclusionConfig(SynthesisConfig):
    """On-the-fly occlusion of training views (all occluder families; 30% stay clean)."""

    keep_clean: float = 0.3


@dataclass
class ProbeOcclusionConfig(SynthesisConfig):
    """Probe occlusion for evaluation: MaskTheFace medical masks on every probe."""

    weights: OccluderWeights = field(default_factory=_medical_only_weights)
    keep_clean: float = 0.0


@dataclass
class DataConfig:
    # Training images: a folder of identities root/<identity>/<image> (or an LFW-style root with
    # images/ inside). Required.
    train_root: str = ""
    # Ground-truth masks of already-occluded training images (an `occtool augment` output's
    # masks/ folder, same relative paths + .png). Images with a mask are used as they are;
    # the others are occluded on the fly by `occlusion`.
    mask_root: Optional[str] = None
    # People never trained on: those appearing in these folds of a pairs file (e.g. LFW
    # pairs.txt, "6-10" = the held-out evaluation people).
    exclude_pairs_file: Optional[str] = None
    exclude_folds: Optional[str] = None
    min_images: int = 1  # identities with fewer images are dropped
    max_identities: Optional[int] = None  # keep only the first N identities (debugging, tests)
    # On-the-fly occlusion (DESIGN piece 4): every training view draws one occluder, or stays
    # clean with probability occlusion.keep_clean.
    occlusion: TrainOcclusionConfig = field(default_factory=TrainOcclusionConfig)
    flip: bool = True  # random horizontal flips
    p: int = 16  # identities per batch
    k: int = 4  # images per identity (K views; an identity with fewer images repeats them)
    load_threads: int = 2  # threads decoding and occluding images (image mode)
    # Feature cache (needs model.freeze_backbone): the frozen body's feature maps are computed
    # once for `cache_views` views of every training image (view 0 clean, view 1 its mirror,
    # the others occluded by `occlusion` with random flips) and training runs on them.
    feature_cache: bool = False
    cache_views: int = 6
    cache_clean_views: int = 2  # how many of the views are clean (0..cache_views)
    cache_dir: Optional[str] = None  # where to keep the cache between runs (None: memory only)
    cache_batch_size: int = 64
    # the runtime of the frozen body while the cache is built: torch | onnxruntime | auto (ONNX
    # Runtime on the CPU when the body exports and agrees with PyTorch to 1e-4; occtool.runtime)
    runtime: str = "auto"
    threads: Optional[int] = None  # ONNX Runtime intra-op threads (None: OMP_NUM_THREADS, else the cores given)

    def __post_init__(self) -> None:
        check_range("min_images", self.min_images, lo=1)
        check_range("max_identities", self.max_identities, lo=1, optional=True)
        check_range("p", self.p, lo=1)
        check_range("k", self.k, lo=1)
        check_range("load_threads", self.load_threads, lo=1)
        check_range("cache_views", self.cache_views, lo=1)
        check_range("cache_clean_views", self.cache_clean_views, lo=0, hi=self.cache_views)
        check_range("cache_batch_size", self.cache_batch_size, lo=1)
        check_choice("runtime", self.runtime, ("torch", "onnxruntime", "auto"))
        check_range("threads", self.threads, lo=1, optional=True)


@dataclass
class ModelConfig:
    backbone: str = "mobilefacenet"  # a registered backbone (occtool.models.list_backbones()): mobilefacenet, ir18, ...
    # Backbone weights: "default" (the shipped weights of the backbone, if any), a path, or
    # null for random initialisation.
    weights: Optional[str] = "default"
    init_checkpoint: Optional[str] = None  # start from an occtool checkpoint (model + matcher)
    hidden_channels: int = 128  # occlusion head
    neck_channels: Optional[int] = 128  # QAConv neck (1x1 conv + BN); null = raw feature map
    neck_kernel: int = 1  # 1 or 3 (a 3x3 first conv: each location sees its neighbours)
    neck_hidden: Optional[int] = None  # two layers: conv(C -> hidden) + BN + ReLU + Conv1x1 + BN
    neck_position: bool = False  # a learned per-location offset added to the neck's map
    # the neck starts from the pretrained output layer's per-location projection (frozen; each
    # location -> its contribution to the embedding, centred by a BatchNorm), then 1x1 conv + BN
    neck_local: bool = False
    # QAConv branch (mobilefacenet): a trainable copy of the backbone's last stage (features.13-14
    # + conv2, from the pretrained weights, lr scale optim.qaconv_branch_lr_scale) makes the
    # matching path's own feature map from the last stage's input; the embedding and occlusion
    # head keep reading the backbone's map. The feature cache then also stores that input.
    # Other backbones: a ConfigError when the model is built.
    qaconv_branch: bool = False
    # Frozen backbone: only the occlusion head, the neck and the QAConv head train (plus the
    # backbone's output layer when train_output_layer). The backbone stays in eval mode.
    freeze_backbone: bool = False
    # Train the backbone's output layer (MobileFaceNet: GDC + linear + BN; IR: BN-FC-BN) even
    # with a frozen body: the layer that makes the occlusion-aware embedding embed(fm * v).
    train_output_layer: bool = False

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, list_backbones())
        if self.weights == "default" and not has_default_weights(self.backbone):
            raise ConfigValueError("weights", f"a weights file, or none for random initialisation ({self.backbone} "
                                   "ships no default weights)", self.weights)
        check_range("hidden_channels", self.hidden_channels, lo=1)
        check_range("neck_channels", self.neck_channels, lo=1, optional=True)
        check_choice("neck_kernel", self.neck_kernel, (1, 3))
        check_range("neck_hidden", self.neck_hidden, lo=1, optional=True)
        if self.neck_local and (self.neck_kernel != 1 or self.neck_hidden is not None):
            # the local neck is projection + 1x1 conv + BN: a kernel or hidden layer would be ignored
            raise ConfigValueError("neck_kernel / neck_hidden", "1 / null with model.neck_local (its neck is the "
                                   "projection + a 1x1 conv)", (self.neck_kernel, self.neck_hidden))


@dataclass
class AdaFaceConfig:
    m: float = 0.4
    h: float = 0.333
    s: float = 64.0
    t_alpha: float = 0.01

    def __post_init__(self) -> None:
        check_range("m", self.m, lo=0.0)
        check_range("h", self.h, lo=0.0, lo_open=True)
        check_range("s", self.s, lo=0.0, lo_open=True)
        check_range("t_alpha", self.t_alpha, lo=0.0, hi=1.0, lo_open=True)


@dataclass
class LossConfig:
    # Total = adaface * L_ada + qaconv * L_qa + occlusion(t) * L_occ + contrastive * L_con
    #         + distill * L_distill  (a part with weight 0 is not computed)
    adaface: float = 1.0
    qaconv: float = 1.0
    occlusion: float = 1.0
    contrastive: float = 0.0
    distill: float = 0.0
    # Occlusion weight warm-up: from occlusion * occlusion_warmup_start to occlusion, linearly
    # over occlusion_warmup_steps optimiser steps.
    occlusion_warmup_start: float = 0.1
    occlusion_warmup_steps: int = 200
    # What the occlusion head learns per map cell: the visible fraction of its pixels ("fraction",
    # DESIGN piece 4) or that fraction thresholded at 0.5 ("binary": a cell mostly covered is
    # occluded; a sharper map, an issue-12 experiment).
    occlusion_target: Literal["fraction", "binary"] = "fraction"
    adaface_params: AdaFaceConfig = field(default_factory=AdaFaceConfig)
    # Which embedding AdaFace / contrastive / distillation see: the plain one (embed(fm)) or the
    # occlusion-aware one (embed(fm * v)).
    embedding: Literal["plain", "occlusion_aware"] = "plain"
    # Visibility used in training by QAConv and the occlusion-aware embedding: the occlusion
    # head's prediction (detached: the matching losses do not train the head), with gradient,
    # the ground truth (samples without one: all visible), or none (all ones).
    visibility: Literal["predicted_detached", "predicted", "ground_truth", "none"] = "predicted_detached"
    qaconv_balanced: bool = True  # positives and negatives weigh half each
    contrastive_temperature: float = 0.07
    # QAConv class memory (occtool.losses.qaconv_memory): weight of the pairwise BCE of each
    # sample against a memory of one map per training identity (its own + the hardest
    # `qaconv_memory_negatives` others); 0 = off.
    qaconv_memory: float = 0.0
    qaconv_memory_negatives: int = 256

    def __post_init__(self) -> None:
        for key in ("adaface", "qaconv", "occlusion", "contrastive", "distill", "occlusion_warmup_start",
                    "qaconv_memory"):
            check_range(key, getattr(self, key), lo=0.0)
        check_range("qaconv_memory_negatives", self.qaconv_memory_negatives, lo=1)
        check_range("occlusion_warmup_steps", self.occlusion_warmup_steps, lo=0)
        check_range("contrastive_temperature", self.contrastive_temperature, lo=0.0, lo_open=True)
        check_choice("occlusion_target", self.occlusion_target, ("fraction", "binary"))


@dataclass
class OptimConfig:
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd
    backbone_lr_scale: float = 1.0  # lr multiplier of the backbone body (0 freezes it)
    output_layer_lr_scale: float = 1.0  # lr multiplier of the backbone's output layer
    heads_lr_scale: float = 1.0  # lr multiplier of the occlusion head, neck, QAConv and AdaFace heads
    qaconv_branch_lr_scale: float = 0.1  # lr multiplier of the QAConv branch (model.qaconv_branch)
    grad_clip: Optional[float] = 5.0  # max global gradient norm (null: none)
    amp: bool = True  # CUDA mixed precision (torch.autocast float16 + GradScaler); ignored on CPU

    def __post_init__(self) -> None:
        check_range("lr", self.lr, lo=0.0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0.0)
        check_range("momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        for key in ("backbone_lr_scale", "output_layer_lr_scale", "heads_lr_scale", "qaconv_branch_lr_scale"):
            check_range(key, getattr(self, key), lo=0.0)
        check_range("grad_clip", self.grad_clip, lo=0.0, lo_open=True, optional=True)


@dataclass
class ScheduleConfig:
    epochs: int = 10
    steps_per_epoch: Optional[int] = None  # default: identities // P
    scheduler: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 0  # linear lr warm-up
    milestones: list[int] = field(default_factory=list)  # step scheduler: epochs where lr *= gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.01  # cosine floor
    seed: int = 0
    log_every: int = 10  # steps between metrics.csv rows
    max_nonfinite: int = 5  # NaN/inf guard: stop after this many non-finite steps in a row
    # The occlusion head's own, shorter schedule (issue 12): it trains for the first N epochs
    # (warm-up + schedule compressed into them), then its BatchNorm statistics are re-estimated
    # over the cached training views and it stays frozen (eval mode) while the other parts train
    # on. Longer head training reads real masks worse, and the running BatchNorm average of the
    # last batches moves that reading by several points. Needs data.feature_cache. null: off.
    occlusion_head_epochs: Optional[int] = None
    occlusion_head_bn_views: int = 8192  # cached views the head's BatchNorm statistics are re-estimated over

    def __post_init__(self) -> None:
        check_range("epochs", self.epochs, lo=1)
        check_range("steps_per_epoch", self.steps_per_epoch, lo=1, optional=True)
        check_range("warmup_steps", self.warmup_steps, lo=0)
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigValueError("milestones", "increasing epochs >= 1", list(self.milestones))
        check_range("gamma", self.gamma, lo=0.0, lo_open=True)
        check_range("min_lr_ratio", self.min_lr_ratio, lo=0.0, hi=1.0)
        check_range("seed", self.seed, lo=0)
        check_range("log_every", self.log_every, lo=1)
        check_range("max_nonfinite", self.max_nonfinite, lo=1)
        n = self.occlusion_head_epochs
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < self.epochs):
            raise ConfigValueError("occlusion_head_epochs",
                                   f"an integer from 1 to epochs - 1 ({self.epochs - 1}) or null", n)
        check_range("occlusion_head_bn_views", self.occlusion_head_bn_views, lo=1)


@dataclass
class ValidationConfig:
    # Validation identification protocol (first image of a person = gallery, the rest probes),
    # run every `every_epochs` epochs, clean and with occluded probes.
    enabled: bool = True
    every_epochs: int = 1
    root: Optional[str] = None  # a separate identity tree; null: hold out people from the training data
    holdout_identities: int = 100  # people with >= 2 images moved from training to validation
    max_probes: Optional[int] = None
    probe_occlusion: ProbeOcclusionConfig = field(default_factory=ProbeOcclusionConfig)
    seed: int = 12345
    batch_size: int = 64
    fusion_weight: float = 1.0  # fused = z(cosine) + w * z(qaconv_occ), z per probe row
    visibility_exponent: float = DEFAULT_VISIBILITY_EXPONENT  # cosine_occ_matched matches through v**exponent (as eval-gallery)
    fused_matched: bool = False  # also score fused_matched = z(cosine_occ_matched) + w * z(qaconv_occ)
    matched: bool = True  # also score cosine_occ_matched (pairwise visibility-matched embeddings)
    select: Optional[str] = None  # metric for best.pt (e.g. "masked/cosine_occ_matched/rank1"); null: none
    panels: int = 8  # fixed occluded validation probes drawn to panels/epoch_NNN.png at each validation; 0: none

    def __post_init__(self) -> None:
        check_range("every_epochs", self.every_epochs, lo=1)
        check_range("panels", self.panels, lo=0)
        check_range("holdout_identities", self.holdout_identities, lo=0)
        check_range("max_probes", self.max_probes, lo=1, optional=True)
        check_range("seed", self.seed, lo=0)
        check_range("batch_size", self.batch_size, lo=1)
        check_range("fusion_weight", self.fusion_weight, lo=0.0)
        check_range("visibility_exponent", self.visibility_exponent, lo=0.0, lo_open=True)


@dataclass
class TestConfig:
    # Optional final evaluation after training on a held-out protocol (same code as
    # validation): the people of `folds` of `pairs_file` under `root`.
    enabled: bool = False
    root: Optional[str] = None
    pairs_file: Optional[str] = None
    folds: Optional[str] = None
    probe_occlusion: ProbeOcclusionConfig = field(default_factory=ProbeOcclusionConfig)
    # One more probe set per occluder family named here (e.g. [sunglasses, hand, steam]),
    # reported separately as occ_<family>; the pairwise methods skip them (embeddings only).
    families: list[str] = field(default_factory=list)
    seed: int = 2024

    def __post_init__(self) -> None:
        check_subset("families", self.families, OCCLUDER_NAMES)
        check_range("seed", self.seed, lo=0)


@dataclass
class CheckpointConfig:
    every_steps: int = 500  # training state + model checkpoint every N steps (0: only epoch ends)
    every_epochs: int = 1
    keep_last: int = 2  # older step checkpoints are removed

    def __post_init__(self) -> None:
        check_range("every_steps", self.every_steps, lo=0)
        check_range("every_epochs", self.every_epochs, lo=0)
        check_range("keep_last", self.keep_last, lo=0)  # 0: keep all


@dataclass
class DebugConfig:
    nonfinite_steps: list[int] = field(default_factory=list)  # inject a NaN loss at these steps (tests)
    stop_after_steps: Optional[int] = None  # end the run after N steps as if interrupted (tests)

    def __post_init__(self) -> None:
        check_range("stop_after_steps", self.stop_after_steps, lo=1, optional=True)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    test: TestConfig = field(default_factory=TestConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    device: str = "auto"
    threads: Optional[int] = None  # torch CPU threads (null: torch's default)

    def __post_init__(self) -> None:
        check_device("device", self.device)
        check_range("threads", self.threads, lo=1, optional=True)
