"""Evaluation: metrics, protocols, leakage checks, feature extraction, scoring and reports.

- `metrics`: ROC/AUC/EER/TAR@FAR, accuracy at a threshold, 10-fold accuracy, CMC / rank-k.
- `pairs`: the LFW `pairs.txt` format and locating its images.
- `protocol`: gallery/probe splits of an identity tree (first image -> gallery).
- `leakage`: content-hash leakage (an error) and subject-overlap summary.
- `extract`: `extract_features` (batched, flip TTA, on-disk cache).
- `scoring`: cosine / QAConv / fused identity scores, shortlist re-ranking, bounded memory.
- `report`: metrics.json, scores.csv, ROC/CMC/histogram PNGs.
- `run`: `evaluate_gallery`, `evaluate_pairs` (what `occtool eval-gallery` calls).
"""

from occtool.evaluation.extract import Features, extract_features, model_identity
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
from occtool.evaluation.pairs import Pair, parse_folds, read_pairs
from occtool.evaluation.protocol import Protocol, build_protocol, write_protocol_trees
from occtool.evaluation.run import EvalModel, evaluate_gallery, evaluate_pairs, load_eval_model

__all__ = [
    "EvalModel",
    "Features",
    "LeakageError",
    "Pair",
    "Protocol",
    "accuracy_at_threshold",
    "auc",
    "best_threshold",
    "build_protocol",
    "check_content_leakage",
    "cmc",
    "eer",
    "evaluate_gallery",
    "evaluate_pairs",
    "extract_features",
    "kfold_accuracy",
    "load_eval_model",
    "model_identity",
    "overlap_report",
    "parse_folds",
    "rank_k",
    "ranks_from_scores",
    "read_pairs",
    "roc_curve",
    "tar_at_far",
    "write_protocol_trees",
]
