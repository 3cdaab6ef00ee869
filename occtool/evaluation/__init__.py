"""Evaluation: metrics, protocols, leakage checks, feature extraction, scoring and reports.

- `metrics`: ROC/AUC/EER/TAR@FAR, accuracy at a threshold, 10-fold accuracy, CMC / rank-k.
- `pairs`: the LFW `pairs.txt` format and locating its images.
- `protocol`: gallery/probe splits of an identity tree (first image -> gallery).
- `leakage`: content-hash leakage (an error) and subject-overlap summary.
- `extract`: `extract_features` (image files: batched, flip TTA, on-disk cache) and
  `features_from_maps` (a frozen body's feature maps already in memory): the same `Features`.
- `methods/`: the scoring methods, one file each, registered (`list_methods`, `create_method`).
- `scoring`: identification over probe chunks (`identify`, shortlist re-ranking), bounded memory.
- `engine`: features -> scores per method -> metrics (`identify_features` for in-memory sets).
- `gallery_eval`, `pairs_eval`: `evaluate_gallery`, `evaluate_pairs` (image trees, pairs files).
- `model`: `load_eval_model` (a pretrained backbone or an occtool checkpoint).
- `eval_gallery`: `EvalGalleryConfig`, `run_eval_gallery` (what `occtool eval-gallery` runs).
- `report`: metrics.json, scores.csv, ROC/CMC/histogram PNGs.
"""

from occtool.evaluation.engine import identify_features
from occtool.evaluation.eval_gallery import EvalGalleryConfig, default_cache_dir, run_eval_gallery
from occtool.evaluation.extract import Features, extract_features, features_from_maps, model_identity
from occtool.evaluation.gallery_eval import evaluate_gallery
from occtool.evaluation.leakage import LeakageError, check_content_leakage, overlap_report
from occtool.evaluation.metrics import (
    accuracy_at_threshold,
    auc,
    best_threshold,
    cmc,
    eer,
    kfold_accuracy,
    rank_k,
    ranks_from_scores,
    roc_curve,
    tar_at_far,
)
from occtool.evaluation.methods import Scoring, create_method, list_methods, register_method
from occtool.evaluation.model import EvalModel, load_eval_model
from occtool.evaluation.pairs import Pair, parse_folds, read_pairs
from occtool.evaluation.pairs_eval import evaluate_pairs
from occtool.evaluation.protocol import Protocol, build_protocol, write_protocol_trees

__all__ = [
    "EvalGalleryConfig",
    "EvalModel",
    "Features",
    "Scoring",
    "LeakageError",
    "Pair",
    "Protocol",
    "accuracy_at_threshold",
    "auc",
    "best_threshold",
    "build_protocol",
    "check_content_leakage",
    "cmc",
    "create_method",
    "default_cache_dir",
    "eer",
    "evaluate_gallery",
    "evaluate_pairs",
    "extract_features",
    "features_from_maps",
    "identify_features",
    "kfold_accuracy",
    "list_methods",
    "load_eval_model",
    "model_identity",
    "overlap_report",
    "parse_folds",
    "rank_k",
    "ranks_from_scores",
    "read_pairs",
    "register_method",
    "run_eval_gallery",
    "roc_curve",
    "tar_at_far",
    "write_protocol_trees",
]
