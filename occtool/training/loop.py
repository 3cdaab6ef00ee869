"""`train(config, *, out_dir, progress=None, resume=None) -> TrainResult`: the training loop.

Outputs in `out_dir` (rank 0 writes): config.yaml, metrics.csv (a row every `log_every` steps
and one per validation), metrics.json (final validation and test figures), loss_curves.png,
validation_curves.png, checkpoints/ (state-<step>.pt + model-<step>.pt + latest.json) and
model.pt (the final model checkpoint, `occtool.models.load_model_checkpoint` reads it).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from occtool.config import to_dict, to_yaml
from occtool.errors import ConfigError, DataError, TrainingError
from occtool.io import atomic_write_json, atomic_write_text
from occtool.losses import AdaFaceLoss, combine_losses
from occtool.progress import ProgressFn, report
from occtool.training import state as st
from occtool.training.config import TrainConfig
from occtool.training.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    convert_batchnorm,
    init_distributed,
)
from occtool.training.module import TrainModule, output_layer_names

LogFn = Optional[Callable[[str], None]]


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    epochs: int
    model_path: Path | None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    nonfinite_steps: int = 0
    wall_time_s: float = 0.0
    interrupted: bool = False


# ---------------------------------------------------------------------------------------------
# small pieces


def loss_weights(cfg: TrainConfig, step: int) -> dict[str, float]:
    lc = cfg.loss
    w = {"adaface": lc.adaface, "qaconv": lc.qaconv, "contrastive": lc.contrastive, "distill": lc.distill}
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


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") and isinstance(m.module, nn.Module) else m


# ---------------------------------------------------------------------------------------------
# set-up


def build_models(cfg: TrainConfig, num_classes: int, device: torch.device):
    """(FaceModel, QAConvMatcher, AdaFaceLoss | None, teacher backbone, body_frozen, weights path)."""
    from occtool.matching import QAConvMatcher
    from occtool.models import FaceModel, build_backbone, load_model_checkpoint

    mc = cfg.model
    weights = None
    matcher = None
    if mc.init_checkpoint:
        loaded = load_model_checkpoint(mc.init_checkpoint)
        model, matcher = loaded.model, loaded.matcher
        if model.backbone.name != mc.backbone:
            raise ConfigError(f"model.init_checkpoint holds a {model.backbone.name} model, model.backbone is {mc.backbone}")
        weights = Path(mc.init_checkpoint)
    else:
        weights = _resolve_weights(cfg)
        backbone = build_backbone(mc.backbone, weights=weights)
        model = FaceModel(backbone=backbone, hidden_channels=mc.hidden_channels, neck_channels=mc.neck_channels)
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


def build_optimizer(cfg: TrainConfig, module: TrainModule, out_names: set[str]):
    oc = cfg.optim
    groups: dict[str, list] = {"body": [], "output": [], "heads": []}
    nodecay: dict[str, list] = {"body": [], "output": [], "heads": []}
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("model.backbone."):
            g = "output" if name[len("model.backbone."):] in out_names else "body"
        else:
            g = "heads"
        (groups if p.ndim > 1 else nodecay)[g].append(p)
    scale = {"body": oc.backbone_lr_scale, "output": oc.output_layer_lr_scale, "heads": oc.heads_lr_scale}
    param_groups = []
    for g in ("body", "output", "heads"):
        for params, wd in ((groups[g], oc.weight_decay), (nodecay[g], 0.0)):
            if params:
                param_groups.append({"params": params, "lr": oc.lr * scale[g], "weight_decay": wd, "name": g})
    if not param_groups:
        raise ConfigError("nothing to train: every parameter is frozen (check model.freeze_backbone and the loss weights)")
    if oc.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=oc.lr, momentum=oc.momentum)
    return torch.optim.AdamW(param_groups, lr=oc.lr)


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path,
    progress: ProgressFn = None,
    resume: str | Path | bool | None = None,
    log: LogFn = None,
) -> TrainResult:
    """Train per `config`, writing into `out_dir` (see the module doc). `resume`: True (the
    newest state in out_dir), a run folder or a state file; the run then continues exactly."""
    from occtool.device import resolve_device

    t_start = time.time()
    cfg = config
    out = Path(out_dir)
    say = log or (lambda _m: None)
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, out, device, dist_info, progress, resume, say, t_start)
    finally:
        cleanup_distributed(dist_info)


def _train(cfg: TrainConfig, out: Path, device, dist_info: DistInfo, progress, resume, say, t_start) -> TrainResult:
    from occtool.augment import OcclusionSynthesizer
    from occtool.data.samplers import PKBatchSampler
    from occtool.training.data import CachedBatches, ImageBatches, ImageLoader, build_feature_cache, build_train_data
    from occtool.training.plots import plot_losses, plot_validation

    main = dist_info.is_main
    sc, lc = cfg.schedule, cfg.loss
    if cfg.data.p < 2 and lc.qaconv > 0:
        raise ConfigError("data.p must be >= 2 for the pairwise QAConv loss (negatives need two identities)")
    state = st.load_state(st.find_state(resume, out)) if resume else None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
    _set_seeds(sc.seed)

    data = build_train_data(cfg)
    say(f"training data: {data.info['images']} images of {data.info['identities']} identities"
        f" ({data.info['identities_excluded_by_folds']} excluded by folds); validation: "
        f"{data.info['validation_images']} images of {data.info['validation_identities']} identities")
    model, matcher, adaface, teacher, body_frozen, out_names, weights = build_models(cfg, len(data.identities), device)
    if adaface is not None:
        adaface.world_size = dist_info.world_size  # norm statistics over the global batch
    h, w = model.feature_size

    synth = OcclusionSynthesizer(config=cfg.data.occlusion)
    loader = ImageLoader(data.records, synthesizer=synth, mask_root=cfg.data.mask_root, flip=cfg.data.flip,
                         size_hw=tuple(model.input_spec.size_hw))
    sampler = PKBatchSampler(data.labels, p=cfg.data.p, k=cfg.data.k, seed=sc.seed, rank=dist_info.rank,
                             world_size=dist_info.world_size, batches_per_epoch=sc.steps_per_epoch)
    from occtool.models import inference_copy

    fast_teacher = inference_copy(teacher, device)  # forward-only copy of the frozen pretrained network
    if cfg.data.feature_cache:
        say(f"feature cache: {len(data.records)} images x {cfg.data.cache_views} views")
        t0 = time.time()
        cache = build_feature_cache(data.records, loader, fast_teacher, cfg, device=device,
                                    weights_desc=_weights_desc(weights), progress=None)
        say(f"feature cache ready in {time.time() - t0:.0f}s")
        source = CachedBatches(cache, data.labels, seed=sc.seed)
    else:
        source = ImageBatches(loader, data.labels, seed=sc.seed, threads=cfg.data.load_threads, map_size=(h, w))

    module = TrainModule(model=model, matcher=matcher, adaface=adaface, teacher=teacher, cfg=cfg,
                         dist_info=dist_info, body_frozen=body_frozen)
    if lc.qaconv <= 0:
        for p in matcher.parameters():
            p.requires_grad_(False)
        if model.neck is not None:
            for p in model.neck.parameters():
                p.requires_grad_(False)
    optimizer = build_optimizer(cfg, module, out_names)
    steps_per_epoch = len(sampler)
    total_steps = sc.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps, steps_per_epoch))
    amp_on = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp_on)

    ddp_module: nn.Module = module
    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        module = convert_batchnorm(module, device)
        module.train()
        ddp_module = DDP(module, device_ids=[device.index] if device.type == "cuda" else None,
                         find_unused_parameters=True, broadcast_buffers=False)
        optimizer = build_optimizer(cfg, module, out_names)  # parameters may have been replaced
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps, steps_per_epoch))

    # validation set (rank 0)
    val_set = None
    if main and cfg.validation.enabled and data.validation:
        from occtool.training.validation import build_eval_set, prepare, set_baseline

        val_set = build_eval_set("validation", data.validation, occlusion_cfg=cfg.validation.probe_occlusion,
                                 seed=cfg.validation.seed, max_probes=cfg.validation.max_probes,
                                 size_hw=tuple(model.input_spec.size_hw), map_size=(h, w))
        prepare(val_set, fast_teacher, device=device, batch_size=cfg.validation.batch_size)
        set_baseline(val_set, fast_teacher, device=device)
        say(f"validation: {val_set.info}")

    step, start_epoch, nonfinite_run, nonfinite_total = 0, 0, 0, 0
    history: list[dict] = []
    best: dict = {}
    if state is not None:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        st.set_rng_state(state["rng"])
        step, start_epoch = int(state["step"]), int(state["sampler"]["epoch"])
        nonfinite_run, nonfinite_total = int(state["nonfinite_run"]), int(state["nonfinite_total"])
        history = list(state.get("history", []))
        best = dict(state.get("best", {}))
        say(f"resumed from step {step} (epoch {start_epoch + 1})")

    def save_all(tag_step: int) -> None:
        if not main:
            return
        from occtool.models import save_model_checkpoint

        ck = st.checkpoints_dir(out)
        ck.mkdir(parents=True, exist_ok=True)
        if lc.qaconv > 0:
            matcher.mark_trained()
        save_model_checkpoint(ck / f"model-{tag_step:08d}.pt", model=model, matcher=matcher if lc.qaconv > 0 else None,
                              config=to_dict(cfg), extra={"step": tag_step})
        st.save_state(out, {
            "step": tag_step,
            "module": {k: v.detach().cpu() for k, v in _unwrap(ddp_module).state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if amp_on else {},
            "sampler": sampler.state_dict(),
            "rng": st.rng_state(),
            "nonfinite_run": nonfinite_run,
            "nonfinite_total": nonfinite_total,
            "history": history,
            "best": best,
            "config": to_dict(cfg),
        }, step=tag_step, keep_last=cfg.checkpoint.keep_last)

    def write_logs() -> None:
        if main:
            _write_csv(out / "metrics.csv", history)
            plot_losses(history, out / "loss_curves.png")
            plot_validation(history, out / "validation_curves.png")

    def run_validation(epoch: int) -> dict:
        from occtool.training.validation import evaluate

        if val_set is None:
            return {}
        res = evaluate(val_set, model=model, matcher=matcher if lc.qaconv > 0 else None, device=device,
                       fusion_weight=cfg.validation.fusion_weight, matched=cfg.validation.matched,
                       backbone_for_maps=None if body_frozen else model.backbone)
        row = {"kind": "epoch", "epoch": epoch + 1, "step": step, **res}
        history.append(row)
        sel = cfg.validation.select
        if sel:
            if sel not in res:
                raise ConfigError(f"validation.select: {sel!r} is not a validation metric; e.g. {', '.join(list(res)[:4])}")
            if not best or res[sel] > best.get("value", -1):
                from occtool.models import save_model_checkpoint

                best.update({"value": res[sel], "epoch": epoch + 1, "step": step, "metric": sel})
                save_model_checkpoint(out / "best.pt", model=model, matcher=matcher if lc.qaconv > 0 else None,
                                      config=to_dict(cfg), extra={"step": step, "validation": res})
        return res

    interrupted = False
    last_val: dict = {}
    t_log = time.time()
    lo, hi = sampler.local_slice
    for epoch in range(start_epoch, sc.epochs):
        sampler.set_epoch(epoch)
        ddp_module.train()
        for global_batch in sampler.iter_global():
            weights = loss_weights(cfg, step)
            if isinstance(source, CachedBatches):
                batch = source.load(global_batch, lo, hi, epoch=epoch, step=step)
            else:
                batch = source.load(global_batch[lo:hi], epoch=epoch, step=step, offset=lo)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp_on):
                parts, aux = ddp_module(batch, weights)
            out_loss = combine_losses(parts, weights)
            total = out_loss.total
            if step in cfg.debug.nonfinite_steps:
                total = total * float("nan")
            finite = torch.isfinite(total.detach()).float()
            if dist_info.enabled:
                import torch.distributed as dist

                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            optimizer.zero_grad(set_to_none=True)
            ok = bool(finite.item() > 0)
            grad_norm = float("nan")
            if ok:
                scaler.scale(total).backward()
                if cfg.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    params = [p for g in optimizer.param_groups for p in g["params"]]
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip))
                    if not math.isfinite(grad_norm) and not amp_on:
                        ok = False  # non-finite gradients: skip the update
                if ok:
                    scaler.step(optimizer)
                    scaler.update()
            if ok:
                nonfinite_run = 0
            else:
                optimizer.zero_grad(set_to_none=True)
                nonfinite_run += 1
                nonfinite_total += 1
                say(f"step {step + 1}: non-finite loss or gradient, update skipped ({nonfinite_run} in a row)")
                if nonfinite_run >= sc.max_nonfinite:
                    write_logs()
                    raise TrainingError(
                        f"training stopped at step {step + 1}: {nonfinite_run} non-finite losses/gradients in a row "
                        f"(schedule.max_nonfinite={sc.max_nonfinite}); lower optim.lr or check the data"
                    )
            scheduler.step()
            step += 1
            if step % max(1, sc.log_every) == 0 or step == 1:
                logged = _global_losses(out_loss, parts, weights, dist_info)
                row = {"kind": "step", "epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                       **logged, "w_occlusion": weights["occlusion"],
                       "visible_mean": float(aux["visible_mean"]), "grad_norm": grad_norm,
                       "skipped": int(not ok), "time_s": round(time.time() - t_start, 2)}
                if not ok:
                    row["loss"] = float("nan")
                history.append(row)
                if main and time.time() - t_log > 30:
                    write_logs()
                    t_log = time.time()
            report(progress, step, total_steps)
            if cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0:
                save_all(step)
            if cfg.debug.stop_after_steps is not None and step >= cfg.debug.stop_after_steps and step < total_steps:
                save_all(step)
                interrupted = True
                break
        if interrupted:
            break
        if (epoch + 1) % max(1, cfg.validation.every_epochs) == 0 or epoch + 1 == sc.epochs:
            if main:
                last_val = run_validation(epoch)
                if last_val:
                    say(_summary(epoch + 1, last_val))
            barrier(dist_info)
        if main:
            write_logs()
        if cfg.checkpoint.every_epochs and (epoch + 1) % cfg.checkpoint.every_epochs == 0:
            save_all(step)

    model_path = None
    metrics: dict = {}
    if main:
        write_logs()
        if not interrupted:
            from occtool.models import save_model_checkpoint

            if lc.qaconv > 0:
                matcher.mark_trained()
            save_model_checkpoint(out / "model.pt", model=model, matcher=matcher if lc.qaconv > 0 else None,
                                  config=to_dict(cfg), extra={"step": step, "validation": last_val})
            model_path = out / "model.pt"
            metrics = {
                "train": {**data.info, "steps": step, "epochs": sc.epochs, "steps_per_epoch": steps_per_epoch,
                          "global_batch": cfg.data.p * cfg.data.k, "world_size": dist_info.world_size,
                          "nonfinite_steps": nonfinite_total, "device": str(device),
                          "final_losses": next((r for r in reversed(history) if r.get("kind") == "step"), {})},
                "validation": last_val,
                "best": best,
            }
            if cfg.test.enabled:
                metrics["test"] = run_test(cfg, model, matcher if lc.qaconv > 0 else None, teacher, device,
                                           body_frozen, say)
            metrics["wall_time_s"] = round(time.time() - t_start, 1)
            atomic_write_json(out / "metrics.json", metrics)
    barrier(dist_info)
    return TrainResult(out_dir=out, steps=step, epochs=sc.epochs, model_path=model_path, metrics=metrics,
                       history=history, nonfinite_steps=nonfinite_total, wall_time_s=time.time() - t_start,
                       interrupted=interrupted)


def _global_losses(out_loss, parts: dict, weights: dict, info: DistInfo) -> dict:
    """The logged losses: those of the global batch (each rank's parts are scaled so that their
    mean over ranks is the global value, as DDP's gradient averaging uses them)."""
    if not info.enabled:
        return out_loss.as_floats()
    import torch.distributed as dist

    names = list(parts)
    vec = torch.stack([out_loss.total.detach().float()] + [parts[n].detach().float() for n in names])
    dist.all_reduce(vec)
    vec = vec / info.world_size
    res = {"loss": float(vec[0])}
    res.update({f"loss_{n}": float(v) for n, v in zip(names, vec[1:])})
    return res


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
    prepare(ev, fast_teacher, device=device, batch_size=cfg.validation.batch_size)
    set_baseline(ev, fast_teacher, device=device)
    res = evaluate(ev, model=model, matcher=matcher, device=device, fusion_weight=cfg.validation.fusion_weight,
                   matched=cfg.validation.matched, backbone_for_maps=None if body_frozen else model.backbone)
    res["protocol"] = {**proto.info, **ev.info}
    res["time_s"] = round(time.time() - t0, 1)
    say("test: " + _summary(None, res))
    return res


def _summary(epoch, res: dict) -> str:
    head = f"epoch {epoch}: " if epoch is not None else ""
    bits = []
    for probe in ("clean", "masked"):
        for method in ("cosine_pretrained", "cosine", "cosine_occ", "cosine_occ_matched", "qaconv_occ", "fused"):
            k = f"{probe}/{method}/rank1"
            if k in res:
                bits.append(f"{probe} {method} {100 * res[k]:.1f}")
    if "occlusion/iou@0.5" in res:
        bits.append(f"IoU {res['occlusion/iou@0.5']:.3f}, clean vis {res['occlusion/visibility_clean']:.3f}")
    return head + "; ".join(bits)
