"""Contrastive fine-tuning (`occtool finetune-contrastive`): make degraded and clean faces of one
person meet, validated by gallery matching on held-out people, never shipped worse than the start.

- `config`: `FinetuneConfig` (data / model / degrade / loss / optim / schedule / validation / ...).
- `degrade`: the degradations, registered (`list_degradations`, `create_degradation`, `Degrader`).
- `restore`: the restoration hook (`load_restorer`: TorchScript or ONNX).
- `views`: P x K training views, partly degraded; the distillation targets.
- `model`: trainable-parameter selection and the module the loop steps (SupCon + anchor).
- `validation`: held-out gallery/probes scored by `occtool.evaluation.identify_features`.
- `task`: `ContrastiveFinetuning`, a `Task` of `occtool.training.run_loop`; `finetune` runs it.
"""

from __future__ import annotations

from pathlib import Path

from occtool.finetune.config import FinetuneConfig
from occtool.finetune.degrade import create_degradation, list_degradations, low_resolution, register_degradation

REFUSED_EXIT_CODE = 3


def finetune(config: FinetuneConfig, *, out_dir: str | Path, progress=None, resume=None, log=None):
    """Run the fine-tune (see `occtool.training.run_loop`); `TrainResult.model_path` is None when
    the run refused (`metrics["refused"]`) or was interrupted."""
    from occtool.finetune.task import ContrastiveFinetuning
    from occtool.training import run_loop

    return run_loop(ContrastiveFinetuning(config), out_dir=out_dir, progress=progress, resume=resume, log=log)


__all__ = ["REFUSED_EXIT_CODE", "FinetuneConfig", "create_degradation", "finetune", "list_degradations",
           "low_resolution", "register_degradation"]
