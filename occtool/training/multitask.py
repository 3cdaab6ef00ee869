"""The multi-task training of `occtool train` as a `Task` of the training loop: AdaFace +
QAConv pairwise + occlusion MSE (+ supervised contrastive, distillation) on PK batches, with
on-the-fly occlusion or a frozen-body feature cache; validation and the final test through
`occtool.training.validation`."""

from __future__ import annotations

import copy
import hashlib
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from occtool.config import to_dict
from occtool.errors import ConfigError, DataError
from occtool.losses import AdaFaceLoss, combine_losses
from occtool.training.config import TrainConfig
from occtool.training.head_schedule import HEAD_GROUP, freeze_head_batchnorm, head_lr_lambda
from occtool.training.module import TrainModule, output_layer_names
from occtool.training.task import LoopEnv, LoopSettings, ModelKind, StepLoss, settings_from_config


def loop_settings(cfg: TrainConfig) -> LoopSettings:
    return settings_from_config(cfg, resume_free_keys=RESUME_FREE_KEYS)


# May change on --resume: where and how fast it runs, logging, checkpoint bookkeeping, debugging.
RESUME_FREE_KEYS = ("device", "threads", "data.load_threads", "data.cache_dir", "data.cache_batch_size",
                    "schedule.log_every", "validation.batch_size", "checkpoint.", "debug.")


def loss_weights(cfg: TrainConfig, step: int) -> dict[str, float]:
    lc = cfg.loss
    w = {"adaface": lc.adaface, "qaconv": lc.qaconv, "contrastive": lc.contrastive, "distill": lc.distill}
    if lc.qaconv_memory > 0:  # only when on: the weights (and metrics.csv) of other runs stay as they were
        w["qaconv_memory"] = lc.qaconv_memory
    start, n = lc.occlusion_warmup_start, lc.occlusion_warmup_steps
    frac = 1.0 if n <= 0 else min(1.0, start + (1.0 - start) * step / n)
    w["occlusion"] = lc.occlusion * frac
    return w


def lr_lambda(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    sc = cfg.schedule

    def f(step: int) -> float:
        if sc.warmup_steps > 0 and step < sc.warmup_steps:
            return (step + 1) / sc.warmup_steps
        if sc.scheduler == "constant":
            return 1.0
        if sc.scheduler == "step":
            epoch = step // max(1, steps_per_epoch)
            return sc.gamma ** sum(1 for m in sc.milestones if epoch >= m)
        t = (step - sc.warmup_steps) / max(1, total_steps - sc.warmup_steps)
        t = min(max(t, 0.0), 1.0)
        return sc.min_lr_ratio + (1 - sc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _resolve_weights(cfg: TrainConfig):
    from occtool.models import default_weights

    w = cfg.model.weights
    if w is None or str(w).lower() in ("none", "null", ""):
        return None
    if str(w) == "default":
        return default_weights(cfg.model.backbone)
    path = Path(w)
    if not path.is_file():
        raise DataError(f"model.weights: file not found: {w}")
    return path


def _weights_desc(path) -> str:
    if path is None:
        return "random"
    from occtool.data.images import file_sha1

    return file_sha1(path)


def build_models(cfg: TrainConfig, num_classes: int, device: torch.device):
    """(FaceModel, QAConvMatcher, AdaFaceLoss | None, teacher backbone, body_frozen, output-layer
    parameter names, weights path)."""
    from occtool.matching import QAConvMatcher
    from occtool.models import FaceModel, build_backbone, load_model_checkpoint

    mc = cfg.model
    matcher = None
    if mc.init_checkpoint:
        loaded = load_model_checkpoint(mc.init_checkpoint)
        model, matcher = loaded.model, loaded.matcher
        if model.backbone.name != mc.backbone:
            raise ConfigError(f"model.init_checkpoint holds a {model.backbone.name} model, model.backbone is {mc.backbone}")
        if model.qaconv_branch != mc.qaconv_branch:
            raise ConfigError(f"model.init_checkpoint {'has' if model.qaconv_branch else 'has no'} QAConv branch, "
                              f"model.qaconv_branch is {str(mc.qaconv_branch).lower()}")
        weights = Path(mc.init_checkpoint)
    else:
        weights = _resolve_weights(cfg)
        backbone = build_backbone(mc.backbone, weights=weights)
        model = FaceModel(backbone=backbone, hidden_channels=mc.hidden_channels, neck_channels=mc.neck_channels,
                          neck_kernel=mc.neck_kernel, neck_hidden=mc.neck_hidden, neck_position=mc.neck_position,
                          neck_local=mc.neck_local, qaconv_branch=mc.qaconv_branch)
    h, w = model.feature_size
    if matcher is None:
        matcher = QAConvMatcher(num_features=model.match_channels, height=h, width=w)
    adaface = None
    if cfg.loss.adaface > 0:
        a = cfg.loss.adaface_params
        adaface = AdaFaceLoss(model.embedding_dim, num_classes, m=a.m, h=a.h, s=a.s, t_alpha=a.t_alpha)
    teacher = copy.deepcopy(model.backbone).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    body_frozen = mc.freeze_backbone or cfg.optim.backbone_lr_scale == 0
    out_names = output_layer_names(model.backbone)
    train_out = (not body_frozen or mc.train_output_layer) and cfg.optim.output_layer_lr_scale > 0
    for name, p in model.backbone.named_parameters():
        p.requires_grad_(train_out if name in out_names else not body_frozen)
    if cfg.data.feature_cache and not body_frozen:
        raise ConfigError("data.feature_cache needs a frozen backbone body (model.freeze_backbone: true)")
    return model.to(device), matcher.to(device), (adaface.to(device) if adaface else None), teacher.to(device), \
        body_frozen, out_names, weights


def build_optimizer(cfg: TrainConfig, module: nn.Module, out_names: set[str]):
    oc = cfg.optim
    names = ["body", "output", "heads", "branch"]
    scale = {"body": oc.backbone_lr_scale, "output": oc.output_layer_lr_scale, "heads": oc.heads_lr_scale,
             "branch": oc.qaconv_branch_lr_scale}
    own_head = cfg.schedule.occlusion_head_epochs is not None  # the head's own schedule: its own groups, last
    if own_head:
        names.append(HEAD_GROUP)
        scale[HEAD_GROUP] = oc.heads_lr_scale
    groups: dict[str, list] = {g: [] for g in names}
    nodecay: dict[str, list] = {g: [] for g in names}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("model.backbone."):
            g = "output" if name[len("model.backbone."):] in out_names else "body"
        elif name.startswith("model.branch."):
            g = "branch"
        else:
            g = HEAD_GROUP if own_head and name.startswith("model.head.") else "heads"
        (groups if p.ndim > 1 else nodecay)[g].append(p)
    param_groups = []
    for g in names:
        for params, wd in ((groups[g], oc.weight_decay), (nodecay[g], 0.0)):
            if params:
                param_groups.append({"params": params, "lr": oc.lr * scale[g], "weight_decay": wd, "name": g})
    if not param_groups:
        raise ConfigError("nothing to train: every parameter is frozen (check model.freeze_backbone and the loss weights)")
    if oc.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=oc.lr, momentum=oc.momentum)
    return torch.optim.AdamW(param_groups, lr=oc.lr)


class MultiTaskTraining:
    """`occtool train`'s task (see `occtool.training.task.Task` for the contract)."""

    def __init__(self, config: TrainConfig) -> None:
        if config.data.p < 2 and (config.loss.qaconv > 0 or config.loss.qaconv_memory > 0):
            raise ConfigError("data.p must be >= 2 for the pairwise QAConv loss (negatives need two identities)")
        if config.schedule.occlusion_head_epochs is not None and not config.data.feature_cache:
            raise ConfigError("schedule.occlusion_head_epochs needs data.feature_cache: true (the head's BatchNorm "
                              "statistics are re-estimated over the cached views)")
        self.config = config
        self.settings = loop_settings(config)
        self.val_set = None
        self.head_frozen = False

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, env: LoopEnv) -> nn.Module:
        from occtool.training.data import build_train_data

        cfg, self.env = self.config, env
        self.data = data = build_train_data(cfg)
        env.say(f"training data: {data.info['images']} images of {data.info['identities']} identities"
                f" ({data.info['identities_excluded_by_folds']} excluded by folds); validation: "
                f"{data.info['validation_images']} images of {data.info['validation_identities']} identities")
        model, matcher, adaface, teacher, self.body_frozen, self.out_names, weights = build_models(
            cfg, len(data.identities), env.device)
        if adaface is not None:
            adaface.world_size = env.dist_info.world_size  # norm statistics over the global batch
        self.model, self.matcher, self.teacher = model, matcher, teacher
        self._build_batches(weights)
        memory = None
        if cfg.loss.qaconv_memory > 0:
            from occtool.losses import QAConvClassMemory

            memory = QAConvClassMemory(num_classes=len(data.identities), channels=model.match_channels,
                                       height=model.feature_size[0], width=model.feature_size[1],
                                       negatives=cfg.loss.qaconv_memory_negatives).to(env.device)
        module = TrainModule(model=model, matcher=matcher, adaface=adaface, teacher=teacher, cfg=cfg,
                             dist_info=env.dist_info, body_frozen=self.body_frozen, memory=memory)
        if cfg.loss.qaconv <= 0 and cfg.loss.qaconv_memory <= 0:
            for p in matcher.parameters():
                p.requires_grad_(False)
            for part in (model.neck, model.branch):
                for p in part.parameters() if part is not None else ():
                    p.requires_grad_(False)
        self._build_validation()
        return module

    def _build_batches(self, weights) -> None:
        """The PK sampler and the batch source (on-the-fly occlusion, or the feature cache)."""
        from occtool.augment import OcclusionSynthesizer
        from occtool.data.samplers import PKBatchSampler
        from occtool.training.data import CachedBatches, ImageBatches, ImageLoader, build_feature_cache

        cfg, env, data, seed = self.config, self.env, self.data, self.config.schedule.seed
        synth = OcclusionSynthesizer(config=cfg.data.occlusion)
        loader = ImageLoader(data.records, synthesizer=synth, mask_root=cfg.data.mask_root, flip=cfg.data.flip,
                             size_hw=tuple(self.model.input_spec.size_hw))
        self.sampler = PKBatchSampler(data.labels, p=cfg.data.p, k=cfg.data.k, seed=seed, rank=env.dist_info.rank,
                                      world_size=env.dist_info.world_size,
                                      batches_per_epoch=cfg.schedule.steps_per_epoch)
        from occtool.models import inference_copy

        self.fast_teacher = inference_copy(self.teacher, env.device)  # forward-only copy of the frozen pretrained network
        if cfg.data.feature_cache:
            env.say(f"feature cache: {len(data.records)} images x {cfg.data.cache_views} views")
            t0 = time.time()
            cache = build_feature_cache(data.records, loader, self.fast_teacher, cfg, device=env.device,
                                        weights_desc=_weights_desc(weights), progress=None, warn=env.say)
            env.say(f"feature cache ready in {time.time() - t0:.0f}s")
            self.source = CachedBatches(cache, data.labels, seed=seed)
        else:
            self.source = ImageBatches(loader, data.labels, seed=seed, threads=cfg.data.load_threads,
                                       map_size=tuple(self.model.feature_size))

    def _build_validation(self) -> None:
        """The validation set (rank 0), with the pretrained network's figures as its baseline."""
        cfg, env = self.config, self.env
        if not (env.dist_info.is_main and cfg.validation.enabled and self.data.validation):
            return
        from occtool.training.validation import build_eval_set, prepare, set_baseline

        vc = cfg.validation
        self.val_set = build_eval_set("validation", self.data.validation, occlusion_cfg=vc.probe_occlusion,
                                      seed=vc.seed, max_probes=vc.max_probes,
                                      size_hw=tuple(self.model.input_spec.size_hw),
                                      map_size=tuple(self.model.feature_size))
        prepare(self.val_set, self.fast_teacher, device=env.device, batch_size=vc.batch_size,
                with_stage=self.model.qaconv_branch)
        set_baseline(self.val_set, self.fast_teacher, device=env.device)
        env.say(f"validation: {self.val_set.info}")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    def optimizer(self, module: nn.Module, *, total_steps: int):
        opt = build_optimizer(self.config, module, self.out_names)
        lam = lr_lambda(self.config, total_steps, self.steps_per_epoch)
        n = self.config.schedule.occlusion_head_epochs
        if n is None:
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lam)
        head_steps = n * self.steps_per_epoch
        head = head_lr_lambda(lr_lambda(self.config, head_steps, self.steps_per_epoch), head_steps)
        lams = [head if g["name"] == HEAD_GROUP else lam for g in opt.param_groups]
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lams)

    # -- steps -------------------------------------------------------------------------------
    def batches(self, epoch: int, *, first_step: int) -> Iterator[dict]:
        from occtool.training.data import CachedBatches

        self._freeze_head_from(epoch)
        self.sampler.set_epoch(epoch)
        lo, hi = self.sampler.local_slice
        for i, global_batch in enumerate(self.sampler.iter_global()):
            step = first_step + i
            if isinstance(self.source, CachedBatches):
                yield self.source.load(global_batch, lo, hi, epoch=epoch, step=step)
            else:
                yield self.source.load(global_batch[lo:hi], epoch=epoch, step=step, offset=lo)

    def _freeze_head_from(self, epoch: int) -> None:
        """schedule.occlusion_head_epochs: at its first frozen epoch the head's BatchNorm
        statistics are re-estimated over the cached views (again on a resume into that epoch:
        same frozen weights, same seeded views, same statistics); from then on it runs in eval mode."""
        sc = self.config.schedule
        self.head_frozen = sc.occlusion_head_epochs is not None and epoch >= sc.occlusion_head_epochs
        if self.head_frozen and epoch == sc.occlusion_head_epochs:
            n = freeze_head_batchnorm(self.model.head, self.source.cache, count=sc.occlusion_head_bn_views,
                                      seed=sc.seed)
            self.env.say(f"occlusion head frozen after epoch {epoch}: BatchNorm statistics of {n} values per channel")

    def loss(self, module: nn.Module, batch: dict, *, step: int) -> StepLoss:
        if self.head_frozen:
            self.model.head.eval()  # the loop puts the module in train mode; the frozen head keeps its statistics
        weights = loss_weights(self.config, step)
        parts, aux = module(batch, weights)
        out = combine_losses(parts, weights)
        return StepLoss(total=out.total, parts=out.parts,
                        log={"w_occlusion": weights["occlusion"], "visible_mean": aux["visible_mean"]})

    # -- validation, best, checkpoints -------------------------------------------------------
    def validate(self, epoch: int, *, step: int) -> dict:
        if self.val_set is None:
            return {}
        from occtool.training.validation import evaluate

        vc = self.config.validation
        res = evaluate(self.val_set, model=self.model, matcher=self._shipped_matcher(), device=self.env.device,
                       fusion_weight=vc.fusion_weight, visibility_exponent=vc.visibility_exponent,
                       matched=vc.matched, fused_matched=vc.fused_matched,
                       backbone_for_maps=None if self.body_frozen else self.model.backbone)
        self.env.say(_summary(epoch + 1, res))
        self._panel(epoch + 1)
        return res

    def _panel(self, epoch: int) -> None:
        """What the model sees on a few fixed occluded validation probes (the truth beside it)."""
        n = min(self.config.validation.panels, len(self.val_set.masked_images))
        if n == 0 or not self.env.dist_info.is_main:
            return
        from occtool.visualize import save_training_panel

        save_training_panel(self.env.out / "panels" / f"epoch_{epoch:03d}.png", self.model,
                            self.val_set.masked_images[:n], self.val_set.masked_fmask[:n],
                            title=f"epoch {epoch}: predicted visibility of fixed masked validation probes")

    def is_better(self, metrics: dict, best: dict) -> bool:
        sel = self.config.validation.select
        if not sel:
            return False
        if sel not in metrics:
            raise ConfigError(f"validation.select: {sel!r} is not a validation metric; e.g. {', '.join(list(metrics)[:4])}")
        return not best or metrics[sel] > best.get("value", -1)

    def best_record(self, metrics: dict, *, epoch: int, step: int) -> dict:
        sel = self.config.validation.select
        return {"value": metrics[sel], "epoch": epoch, "step": step, "metric": sel}

    def _shipped_matcher(self):
        return self.matcher if self.config.loss.qaconv > 0 or self.config.loss.qaconv_memory > 0 else None

    def save_model(self, path: Path, *, extra: dict, kind: ModelKind) -> None:
        from occtool.models import save_model_checkpoint

        # best.pt keeps the matcher's trained flag as it is (as before the loop was split).
        if self._shipped_matcher() is not None and kind != "best":
            self.matcher.mark_trained()
        save_model_checkpoint(path, model=self.model, matcher=self._shipped_matcher(),
                              config=to_dict(self.config), extra=extra)

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "data": self._data_fingerprint()}

    def load_state_dict(self, state: dict) -> int:
        saved, now = state.get("data"), self._data_fingerprint()
        if saved is not None and saved != now:
            what = (f"{saved['images']} images of {saved['identities']} identities then, "
                    f"{now['images']} of {now['identities']} now")
            if saved["identities"] != now["identities"] or not self.env.resume_override:
                raise ConfigError(f"--resume: the training data differ from the run's ({what}; data.train_root "
                                  f"{self.config.data.train_root}); "
                                  + ("the classifier has one row per identity: it cannot continue"
                                     if saved["identities"] != now["identities"] else
                                     "resume on the same data, or pass --resume-override to continue on these"))
        self.sampler.load_state_dict(state["sampler"])
        return int(state["sampler"]["epoch"])

    def _data_fingerprint(self) -> dict:
        """What the training data were: counts and a hash of the (identity, relative path) list."""
        digest = hashlib.sha1("\n".join(f"{r.identity}/{r.relpath.as_posix()}" for r in self.data.records).encode())
        return {"images": len(self.data.records), "identities": len(self.data.identities),
                "sha1": digest.hexdigest()}

    # -- the end -----------------------------------------------------------------------------
    def finish(self, run) -> tuple[Optional[Path], dict]:
        cfg, path = self.config, run.out / "model.pt"
        self.save_model(path, extra={"step": run.step, "validation": run.last_val}, kind="final")
        final_losses = next((r for r in reversed(run.history) if r.get("kind") == "step"), {})
        metrics = {
            "train": {**self.data.info, "steps": run.step, "epochs": cfg.schedule.epochs,
                      "steps_per_epoch": run.steps_per_epoch, "global_batch": cfg.data.p * cfg.data.k,
                      "world_size": run.dist_info.world_size, "nonfinite_steps": run.nonfinite_total,
                      "device": str(run.device), "final_losses": final_losses},
            "validation": run.last_val,
            "best": run.best,
        }
        if cfg.test.enabled:
            metrics["test"] = run_test(cfg, self.model, self._shipped_matcher(), self.teacher, run.device,
                                       self.body_frozen, self.env.say)
        return path, metrics


def run_test(cfg: TrainConfig, model, matcher, teacher, device, body_frozen: bool, say) -> dict:
    """The final held-out protocol (test section): people of `folds` of `pairs_file` under `root`."""
    from occtool.evaluation.protocol import build_protocol
    from occtool.training.validation import build_eval_set, evaluate, prepare, set_baseline

    tc = cfg.test
    if not tc.root:
        raise ConfigError("test.root is not set (test.enabled is true)")
    proto = build_protocol(tc.root, pairs_file=tc.pairs_file, folds=tc.folds)
    t0 = time.time()
    h, w = model.feature_size
    ev = build_eval_set("test", gallery=proto.gallery, probes=proto.probes, occlusion_cfg=tc.probe_occlusion,
                        seed=tc.seed, size_hw=tuple(model.input_spec.size_hw), map_size=(h, w), families=tc.families)
    from occtool.models import inference_copy

    fast_teacher = inference_copy(teacher, device)
    prepare(ev, fast_teacher, device=device, batch_size=cfg.validation.batch_size, with_stage=model.qaconv_branch)
    set_baseline(ev, fast_teacher, device=device)
    res = evaluate(ev, model=model, matcher=matcher, device=device, fusion_weight=cfg.validation.fusion_weight,
                   visibility_exponent=cfg.validation.visibility_exponent,
                   matched=cfg.validation.matched, fused_matched=cfg.validation.fused_matched,
                   backbone_for_maps=None if body_frozen else model.backbone)
    res["protocol"] = {**proto.info, **ev.info}
    res["time_s"] = round(time.time() - t0, 1)
    say("test: " + _summary(None, res))
    return res


def _summary(epoch, res: dict) -> str:
    head = f"epoch {epoch}: " if epoch is not None else ""
    bits = []
    for probe in ("clean", "masked"):
        for method in ("cosine_pretrained", "cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ", "fused",
                       "fused_matched"):
            k = f"{probe}/{method}/rank1"
            if k in res:
                bits.append(f"{probe} {method} {100 * res[k]:.1f}")
    if "occlusion/iou@0.5" in res:
        bits.append(f"IoU {res['occlusion/iou@0.5']:.3f}, clean vis {res['occlusion/visibility_clean']:.3f}")
    return head + "; ".join(bits)
