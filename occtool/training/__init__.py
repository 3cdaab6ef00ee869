"""Multi-task training (DESIGN pieces 2-6): AdaFace + QAConv pairwise + occlusion MSE (+ optional
supervised contrastive and embedding distillation), PK batches with on-the-fly occlusion or a
frozen-body feature cache, exact resume, NaN guard, CUDA mixed precision and DDP (torchrun).

`train(config, *, out_dir, progress=None, resume=None, epoch_hooks=()) -> TrainResult`; the
config is `TrainConfig` (sections data / model / loss / optim / schedule / validation / test /
checkpoint / debug), loaded with `occtool.config.load_config(TrainConfig, yaml_path=...)`.

The loop itself is generic: `run_loop(task, ...)` runs any `Task` (`occtool.training.task`:
model, optimiser, batches, loss, validation, best rule, model checkpoints) with the shared
machinery (steps, AMP, NaN guard, DDP, logging, checkpoints and exact resume, epoch hooks);
`train` runs `MultiTaskTraining`.
"""

from occtool.training.config import TrainConfig
from occtool.training.loop import TrainResult, run_loop, train
from occtool.training.multitask import MultiTaskTraining
from occtool.training.run_state import RunState
from occtool.training.task import EpochHook, LoopEnv, LoopSettings, StepLoss, Task

__all__ = [
    "EpochHook", "LoopEnv", "LoopSettings", "MultiTaskTraining", "RunState", "StepLoss", "Task", "TrainConfig",
    "TrainResult", "run_loop", "train",
]
