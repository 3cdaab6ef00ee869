"""`occtool finetune-contrastive` as a `Task` of the shared training loop (`occtool.training.run_loop`).

Supervised contrastive fine-tuning of a recogniser on P x K batches whose views are partly
degraded, with an optional distillation anchor; validated before training (epoch 0 = the
starting model) and after every epoch on held-out people (`occtool.finetune.validation`). The
best epoch is kept by the rule of `FinetuneValidationConfig`; when no epoch beats the start the
task refuses: no model.pt, `finish` returns (None, metrics with "refused": true).
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch import nn

from occtool.config import to_dict
from occtool.data.samplers import PKBatchSampler
from occtool.errors import ConfigError, DataError
from occtool.finetune.config import FinetuneConfig
from occtool.finetune.degrade import Degrader
from occtool.finetune.model import FinetuneModule, set_trainable
from occtool.finetune.report import write_report
from occtool.finetune.restore import load_restorer
from occtool.finetune.validation import build_validation_set, evaluate
from occtool.finetune.views import TeacherCache, ViewMaker
from occtool.io import atomic_save
from occtool.models import (
    FaceModel, build_backbone, default_weights, inference_copy, load_model_checkpoint,
    save_model_checkpoint,
)
from occtool.training.data import ImageLoader, build_train_data
from occtool.training.task import LoopEnv, LoopSettings, ModelKind, StepLoss, settings_from_config


def loop_settings(cfg: FinetuneConfig) -> LoopSettings:
    return settings_from_config(cfg, validate_at_start=cfg.validation.enabled)  # epoch 0 = the starting model


def lr_factor(cfg: FinetuneConfig, step: int, total_steps: int) -> float:
    sc = cfg.schedule
    if sc.warmup_steps > 0 and step < sc.warmup_steps:
        return (step + 1) / sc.warmup_steps
    if sc.scheduler == "constant":
        return 1.0
    t = min(max((step - sc.warmup_steps) / max(1, total_steps - sc.warmup_steps), 0.0), 1.0)
    return sc.min_lr_ratio + (1 - sc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def accepts(metrics: dict, best: dict, *, start_clean: float, clean_margin_points: float) -> bool:
    """The best-epoch rule: a higher mean degraded rank-1 than the best so far, with clean rank-1
    at most `clean_margin_points` below the starting model's (`best` {}: the first is best)."""
    if not best:
        return True
    clean_ok = metrics["clean/rank1"] >= start_clean - clean_margin_points / 100.0 - 1e-12
    return clean_ok and metrics["degraded/rank1"] > best["degraded/rank1"]


def load_start_model(cfg: FinetuneConfig):
    """(FaceModel, matcher or None, description of the start) from model.checkpoint or model.weights."""
    mc = cfg.model
    if mc.checkpoint:
        loaded = load_model_checkpoint(mc.checkpoint)
        if loaded.model.backbone.name != mc.backbone:
            raise ConfigError(f"model.checkpoint holds a {loaded.model.backbone.name} model, model.backbone is {mc.backbone}")
        return loaded.model, loaded.matcher, f"checkpoint {mc.checkpoint}"
    w = mc.weights
    if w is None or str(w).lower() in ("none", "null", ""):
        path = None
    elif str(w) == "default":
        path = default_weights(mc.backbone)
        if path is None:
            raise ConfigError(f"model.weights: no default weights for {mc.backbone}; give a file")
    else:
        path = Path(w)
        if not path.is_file():
            raise DataError(f"model.weights: file not found: {w}")
    model = FaceModel(backbone=build_backbone(mc.backbone, weights=path))
    return model, None, f"weights {path}" if path else "random initialisation"


class ContrastiveFinetuning:
    """The fine-tuning task (see `occtool.training.task.Task` for the contract)."""

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config
        self.settings = loop_settings(config)
        self.start: dict = {}  # the starting model's validation metrics (epoch 0)
        self.prev: dict = {}  # the previous validation metrics
        self.warnings: list[str] = []
        self._sims: list[float] = []
        self._validating_start = False
        self.start_similarity: Optional[float] = None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, env: LoopEnv) -> nn.Module:
        cfg, self.env = self.config, env
        self.data = build_train_data(cfg)
        model, self.matcher, self.start_desc = load_start_model(cfg)
        self.model = model.to(env.device)
        self.teacher = inference_copy(copy.deepcopy(model.backbone).eval(), env.device)
        self.trainable_params = set_trainable(self.model, cfg.model.trainable)
        self._build_batches()
        env.say(f"start: {self.start_desc}; training {self.trainable_params} parameters ({cfg.model.trainable})")
        env.say(f"training data: {self.data.info['images']} images of {self.data.info['identities']} people "
                f"({self.data.info['identities_excluded_by_folds']} excluded by folds); {self.few_info}")
        self.val_set = None
        if env.dist_info.is_main and cfg.validation.enabled:
            self._build_validation()
        return FinetuneModule(model=self.model, temperature=cfg.loss.temperature, distill=cfg.loss.distill,
                              freeze_bn=cfg.model.freeze_bn, dist_info=env.dist_info)

    def _degrade_tools(self):
        dc = self.config.degrade
        restorer = load_restorer(dc.restore, batch_size=dc.restore_batch_size) if dc.restore else None
        return Degrader(dc), restorer

    def _build_batches(self) -> None:
        cfg, env, data = self.config, self.env, self.data
        d = cfg.data
        counts = np.bincount(data.labels, minlength=len(data.identities))
        few = counts < d.k
        self.few_info = (f"{int((~few).sum())} people with >= {d.k} images; {int(few.sum())} with fewer "
                         f"({int(counts[few].sum())} images) {'repeated' if d.few_images == 'replace' else 'skipped'}")
        self.sampler_info = {"identities_with_k_images": int((~few).sum()), "identities_with_fewer": int(few.sum()),
                             "images_of_those_with_fewer": int(counts[few].sum()), "few_images": d.few_images}
        self.sampler = PKBatchSampler(data.labels, p=d.p, k=d.k, seed=cfg.schedule.seed, rank=env.dist_info.rank,
                                      world_size=env.dist_info.world_size,
                                      min_images=d.k if d.few_images == "skip" else 1,
                                      batches_per_epoch=cfg.schedule.steps_per_epoch)
        self.degrader, self.restorer = self._degrade_tools()
        loader = ImageLoader(data.records, synthesizer=None, mask_root=None, flip=d.flip,
                             size_hw=tuple(self.model.backbone.input_spec.size_hw))
        self.views = ViewMaker(loader, degrader=self.degrader, restorer=self.restorer, k=d.k,
                               fraction=cfg.degrade.fraction, flip=d.flip, seed=cfg.schedule.seed)
        self.teacher_cache = TeacherCache(self.teacher, device=env.device) if cfg.loss.distill > 0 else None

    def _build_validation(self) -> None:
        vc = self.config.validation
        if not self.data.validation:
            raise DataError("validation: no held-out people (set validation.holdout_identities or validation.root)")
        loader = ImageLoader(self.data.validation, synthesizer=None, mask_root=None, flip=False,
                             size_hw=tuple(self.model.backbone.input_spec.size_hw))
        self.val_set = build_validation_set(self.data.validation, loader=loader, degrader=self.degrader,
                                            restorer=self.restorer, kinds=vc.probe_kinds, seed=vc.seed,
                                            probes_per_identity=vc.probes_per_identity)
        self.env.say(f"validation: {self.val_set.info}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    def optimizer(self, module: nn.Module, *, total_steps: int):
        oc = self.config.optim
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("nothing to train: model.trainable selects no parameter")
        decay = [p for p in params if p.ndim > 1]
        other = [p for p in params if p.ndim <= 1]
        groups = [g for g in ({"params": decay, "weight_decay": oc.weight_decay}, {"params": other, "weight_decay": 0.0})
                  if g["params"]]
        opt = (torch.optim.SGD(groups, lr=oc.lr, momentum=oc.momentum) if oc.optimizer == "sgd"
               else torch.optim.AdamW(groups, lr=oc.lr))
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(self.config, s, total_steps))

    # -- steps -------------------------------------------------------------------------------
    def batches(self, epoch: int, *, first_step: int) -> Iterator[dict]:
        self.sampler.set_epoch(epoch)
        lo, hi = self.sampler.local_slice
        for i, global_batch in enumerate(self.sampler.iter_global()):
            batch = self.views.batch(global_batch, self.data.labels, epoch=epoch, step=first_step + i, lo=lo, hi=hi)
            if self.teacher_cache is not None:
                batch["teacher"] = self.teacher_cache(batch)
            yield batch

    def loss(self, module: nn.Module, batch: dict, *, step: int) -> StepLoss:
        parts, diag = module(batch)
        w = self.config.loss.distill
        total = parts["contrastive"] + (w * parts["distill"] if "distill" in parts else 0.0)
        sim = float(diag["pair_similarity"])
        if math.isfinite(sim):
            self._sims.append(sim)
            if step == 0:  # computed with the starting weights: the start's training-pair similarity
                self.start_similarity = sim
        return StepLoss(total=total, parts={k: v.detach() for k, v in parts.items()}, log={"pair_similarity": sim})

    # -- validation, best, checkpoints -------------------------------------------------------
    def validate(self, epoch: int, *, step: int) -> dict:
        if self.val_set is None:
            return {}

        res = evaluate(self.val_set, self.model.backbone, device=self.env.device,
                       batch_size=self.config.validation.batch_size)
        if self._sims:
            res["train/pair_similarity"] = float(np.mean(self._sims))
        self._sims = []
        self._validating_start = epoch < 0
        if epoch < 0:
            self.start = dict(res)
        self._check_trap(epoch + 1, res)
        self.prev = dict(res)
        self.env.say(_summary(epoch + 1, res))
        return res

    def _check_trap(self, epoch: int, res: dict) -> None:
        """Warn when the training-pair similarity rises while validation falls."""
        prev, sim = self.prev, res.get("train/pair_similarity")
        if not prev or sim is None:
            return
        prev_sim = prev.get("train/pair_similarity", self.start_similarity)
        fell = [k for k in ("degraded/rank1", "clean/rank1") if res[k] < prev[k]]
        if prev_sim is not None and sim > prev_sim and fell:
            msg = (f"epoch {epoch}: training-pair similarity rose ({prev_sim:.4f} -> {sim:.4f}) while validation "
                   f"fell ({', '.join(f'{k} {100 * prev[k]:.2f} -> {100 * res[k]:.2f}' for k in fell)}): the "
                   "training pairs are being memorised, not the people")
            self.warnings.append(msg)
            res["warning/similarity_up_validation_down"] = 1.0
            self.env.say("warning: " + msg)

    def is_better(self, metrics: dict, best: dict) -> bool:
        start_clean = self.start.get("clean/rank1", metrics["clean/rank1"])
        return accepts(metrics, best, start_clean=start_clean, clean_margin_points=self.config.validation.clean_margin)

    def best_record(self, metrics: dict, *, epoch: int, step: int) -> dict:
        return {"epoch": epoch, "step": step, "degraded/rank1": metrics["degraded/rank1"],
                "clean/rank1": metrics["clean/rank1"],
                "rule": f"degraded/rank1 up, clean/rank1 >= start - {self.config.validation.clean_margin} points"}

    def save_model(self, path: Path, *, extra: dict, kind: ModelKind) -> None:
        if kind == "best" and self._validating_start:
            return  # epoch 0 is the starting model: nothing fine-tuned to keep
        save_model_checkpoint(path, model=self.model, matcher=self.matcher, config=to_dict(self.config),
                              extra={**extra, "finetune_contrastive": True, "start": self.start_desc})

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "finetune": {
            "start": self.start, "prev": self.prev, "warnings": list(self.warnings),
            "start_similarity": self.start_similarity}}

    def load_state_dict(self, state: dict) -> int:
        self.sampler.load_state_dict(state["sampler"])
        ft = state.get("finetune", {})
        self.start, self.prev, self.warnings = dict(ft.get("start", {})), dict(ft.get("prev", {})), list(ft.get("warnings", []))
        self.start_similarity = ft.get("start_similarity")
        return int(state["sampler"]["epoch"])

    # -- the end -----------------------------------------------------------------------------
    def finish(self, run) -> tuple[Optional[Path], dict]:
        cfg = self.config
        epochs = [r for r in run.history if r.get("kind") == "epoch"]
        metrics = {
            "train": {**self.data.info, **self.sampler_info, "steps": run.step, "epochs": cfg.schedule.epochs,
                      "steps_per_epoch": run.steps_per_epoch, "global_batch": cfg.data.p * cfg.data.k,
                      "trainable": cfg.model.trainable, "trainable_parameters": self.trainable_params,
                      "start": self.start_desc, "nonfinite_steps": run.nonfinite_total, "device": str(run.device)},
            "validation": {"start": self.start, "epochs": epochs, "info": self.val_set.info if self.val_set else {}},
            "best": dict(run.best),
            "warnings": list(self.warnings),
        }
        if not cfg.validation.enabled:
            path = run.out / "model.pt"
            self.save_model(path, extra={"step": run.step}, kind="final")
            metrics.update(refused=False, decision="validation disabled: the last epoch's model is shipped unchecked")
        elif run.best.get("epoch", 0) == 0:
            path = None
            for f in list((run.out / "checkpoints").glob("model-*.pt")) + [run.out / "best.pt"]:
                f.unlink(missing_ok=True)
            metrics.update(refused=True, decision=(
                "refused: no epoch beat the starting model (degraded rank-1 up with clean rank-1 within "
                f"{cfg.validation.clean_margin} points); no model written"))
        else:
            path = run.out / "model.pt"

            atomic_save(path, lambda tmp: shutil.copyfile(run.out / "best.pt", tmp))
            metrics.update(refused=False, decision=f"shipped epoch {run.best['epoch']} (best by the rule)")
        write_report(run.out / "report.md", metrics)
        self.env.say(metrics["decision"])
        return path, metrics


def _summary(epoch: int, res: dict) -> str:
    bits = [f"{k.split('/')[0]} {100 * v:.2f}" for k, v in res.items() if k.endswith("/rank1") and k != "degraded/rank1"]
    sim = res.get("train/pair_similarity")
    tail = f"; training-pair similarity {sim:.4f}" if sim is not None else ""
    return f"epoch {epoch} rank-1: " + ", ".join(bits) + f" (degraded mean {100 * res['degraded/rank1']:.2f})" + tail
