"""What `occtool eval-gallery` runs, usable without the CLI: its config (validating itself) and
`run_eval_gallery(cfg, out)`, which checks the mode, loads the model, evaluates and writes the report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from occtool.config import check_choice, check_device, check_range, check_subset
from occtool.errors import ConfigError, DataError
from occtool.evaluation.metrics import DEFAULT_FARS
from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT


@dataclass
class EvalGalleryConfig:
    # identification mode
    gallery_root: Optional[Path] = None
    probe_root: Optional[Path] = None
    # pairs mode
    pairs: Optional[Path] = None
    root: Optional[Path] = None
    root_b: Optional[Path] = None
    folds_of: int = 10  # folds of a plain-list pairs file (no LFW header), balanced same/different
    # model: a pretrained backbone, or an occtool checkpoint
    backbone: Optional[str] = None
    weights: Optional[Path] = None
    checkpoint: Optional[Path] = None
    # scoring
    methods: list[str] = field(default_factory=lambda: ["auto"])
    flip: bool = True
    threshold: Optional[float] = None
    fars: list[float] = field(default_factory=lambda: list(DEFAULT_FARS))
    fusion_weight: float = 1.0  # fused / fused_matched = z(cosine part) + fusion_weight * z(QAConv part)
    visibility_exponent: float = DEFAULT_VISIBILITY_EXPONENT  # cosine_occ_matched matches through v**exponent
    shortlist_k: Optional[int] = None  # None: auto (cosine top-100 shortlist above 10,000 gallery images)
    max_impostors: int = 50_000_000  # above this many impostor pairs, a uniform sample is scored
    # running
    max_bad: int = 0
    batch_size: int = 64
    device: str = "auto"
    runtime: str = "auto"  # torch | onnxruntime | auto (ONNX Runtime on the CPU when the model exports)
    threads: Optional[int] = None  # ONNX Runtime intra-op threads (None: OMP_NUM_THREADS, else the cores given)
    cache_dir: Optional[Path] = None  # None: $OCCTOOL_CACHE or ~/.cache/occtool/features
    cache: bool = True

    def __post_init__(self) -> None:
        check_range("threshold", self.threshold, optional=True)
        if not self.fars:
            raise ConfigError("fars: expected at least one false accept rate in (0, 1)")
        for far in self.fars:
            check_range("fars", far, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_range("shortlist_k", self.shortlist_k, lo=0, optional=True)  # 0: score the whole gallery
        check_range("max_impostors", self.max_impostors, lo=1)
        check_range("max_bad", self.max_bad, lo=0)
        check_range("fusion_weight", self.fusion_weight, lo=0.0)
        check_range("visibility_exponent", self.visibility_exponent, lo=0.0, lo_open=True)
        check_range("folds_of", self.folds_of, lo=1)
        check_range("batch_size", self.batch_size, lo=1)
        check_device("device", self.device)
        check_choice("runtime", self.runtime, ("torch", "onnxruntime", "auto"))
        check_range("threads", self.threads, lo=1, optional=True)
        if self.methods not in ([], ["auto"]):
            from occtool.evaluation.methods import list_methods

            check_subset("methods", self.methods, list_methods())

    @property
    def mode(self) -> str:
        """'identification' or 'pairs'; ConfigError when the roots given do not make one mode."""
        ident = self.gallery_root is not None or self.probe_root is not None
        pairs_mode = self.pairs is not None or self.root is not None or self.root_b is not None
        if ident and pairs_mode:
            raise ConfigError("choose one mode: --gallery-root/--probe-root, or --pairs/--root")
        if not ident and not pairs_mode:
            raise ConfigError("give --gallery-root G --probe-root P, or --pairs FILE --root DIR")
        if ident and (self.gallery_root is None or self.probe_root is None):
            raise ConfigError("identification mode needs both --gallery-root and --probe-root")
        if pairs_mode and (self.pairs is None or self.root is None):
            raise ConfigError("pairs mode needs both --pairs and --root")
        return "identification" if ident else "pairs"


def default_cache_dir() -> Path:
    """$OCCTOOL_CACHE, else $XDG_CACHE_HOME/occtool/features, else ~/.cache/occtool/features."""
    env = os.environ.get("OCCTOOL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "occtool" / "features"


def usable_cache_dir(cache_dir: Optional[Path]) -> tuple[Optional[Path], Optional[str]]:
    """(cache_dir, None), or (None, a warning) when the cache folder cannot be written: the run
    then goes on uncached."""
    from occtool.io import check_writable_dir

    why = check_writable_dir(cache_dir) if cache_dir is not None else None
    if why is None:
        return cache_dir, None
    return None, f"feature cache {cache_dir} cannot be written ({why}): running without the cache"


def run_eval_gallery(cfg: EvalGalleryConfig, out: str | Path, *, force: bool = False, progress=None) -> dict:
    """Validate the mode, run the evaluation, write every output into `out`. Returns the result dict."""
    from occtool.device import resolve_device
    from occtool.evaluation.gallery_eval import evaluate_gallery
    from occtool.evaluation.model import load_eval_model
    from occtool.evaluation.pairs_eval import evaluate_pairs
    from occtool.evaluation.report import write_report
    from occtool.io import check_out_dir, output_folder

    mode = cfg.mode
    check_out_dir(out, force=force)  # before the model and the images: fail in a second, not an hour
    device = resolve_device(cfg.device)
    em = load_eval_model(backbone=cfg.backbone, weights=cfg.weights, checkpoint=cfg.checkpoint)
    from occtool.runtime import resolve_runtime

    resolve_runtime(cfg.runtime, device)  # ConfigError now (onnxruntime on CUDA, not installed), not mid-run
    em.runtime, em.threads, em.fusion_weight = cfg.runtime, cfg.threads, cfg.fusion_weight
    em.visibility_exponent = cfg.visibility_exponent
    cache_dir, cache_note = usable_cache_dir((cfg.cache_dir or default_cache_dir()) if cfg.cache else None)
    common = dict(em=em, methods=None if cfg.methods in ([], ["auto"]) else cfg.methods, flip=cfg.flip,
                  threshold=cfg.threshold, max_bad=cfg.max_bad, batch_size=cfg.batch_size, device=device,
                  cache_dir=cache_dir, fars=tuple(cfg.fars), progress=progress)
    if mode == "identification":
        gallery, probes = _trees(cfg.gallery_root, cfg.probe_root)
        run = lambda: evaluate_gallery(gallery, probes, shortlist_k=cfg.shortlist_k,  # noqa: E731
                                       max_impostors=cfg.max_impostors, **common)
    else:
        run = lambda: evaluate_pairs(cfg.pairs, cfg.root, cfg.root_b, folds_of=cfg.folds_of, **common)  # noqa: E731
    with output_folder(out, command="eval-gallery", force=force, cfg=cfg) as folder:
        result = run()
        result["metrics"]["device"] = str(device)
        result["metrics"]["runtime"] = {"requested": cfg.runtime, "resolved": resolve_runtime(cfg.runtime, device)}
        result["metrics"]["cache_dir"] = str(cache_dir) if cache_dir else None
        if cache_note:
            result["metrics"].setdefault("notes", []).append(cache_note)
        write_report(folder.path, result)
    return result


def _trees(gallery_root: Path, probe_root: Path):
    from occtool.data.images import list_identity_tree

    try:
        gallery = list_identity_tree(gallery_root)
    except DataError as exc:
        raise DataError(f"gallery: {exc}") from None
    try:
        probes = list_identity_tree(probe_root)
    except DataError as exc:
        raise DataError(f"probes: {exc}") from None
    return gallery, probes
