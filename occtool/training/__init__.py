"""Multi-task training (DESIGN pieces 2-6): AdaFace + QAConv pairwise + occlusion MSE (+ optional
supervised contrastive and embedding distillation), PK batches with on-the-fly occlusion or a
frozen-body feature cache, exact resume, NaN guard, CUDA mixed precision and DDP (torchrun).

`train(config, *, out_dir, progress=None, resume=None) -> TrainResult`; the config is
`TrainConfig` (sections data / model / loss / optim / schedule / validation / test /
checkpoint / debug), loaded with `occtool.config.load_config(TrainConfig, yaml_path=...)`.
"""

from occtool.training.config import TrainConfig
from occtool.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
