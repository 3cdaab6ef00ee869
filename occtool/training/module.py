"""The trainable parts and one training step's loss parts.

`TrainModule` holds the FaceModel (backbone + occlusion head + neck), the QAConv matcher and
the AdaFace class centres, so that one DistributedDataParallel wrapper covers every trained
parameter. `forward(batch, weights)` returns the unweighted loss parts of the active losses (and a few
detached diagnostics).
"""

from __future__ import annotations

import torch
from torch import nn

from occtool.losses import (
    AdaFaceLoss,
    CountReducer,
    occlusion_loss,
    qaconv_pair_loss,
    supervised_contrastive_loss,
)
from occtool.losses.distill import embedding_distillation_loss
from occtool.training.distributed import DistInfo, gather_with_grad


def output_layer_names(backbone: nn.Module) -> set[str]:
    """Names of the backbone parameters used by its output layer (`embed_raw`), found by autograd."""
    c = backbone.feature_channels
    h, w = backbone.feature_size
    params = dict(backbone.named_parameters())
    was = backbone.training
    backbone.eval()
    try:
        fm = torch.rand(2, c, h, w, device=next(backbone.parameters()).device)
        with torch.enable_grad():
            req = {n: p.requires_grad for n, p in params.items()}
            for p in params.values():
                p.requires_grad_(True)
            out = backbone.embed_raw(fm).sum()
            grads = torch.autograd.grad(out, list(params.values()), allow_unused=True)
            for n, p in params.items():
                p.requires_grad_(req[n])
    finally:
        backbone.train(was)
    return {n for n, g in zip(params, grads) if g is not None}


class TrainModule(nn.Module):
    def __init__(
        self,
        *,
        model: nn.Module,
        matcher: nn.Module | None,
        adaface: AdaFaceLoss | None,
        teacher: nn.Module | None,
        cfg,
        dist_info: DistInfo,
        body_frozen: bool,
        memory: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.matcher = matcher
        self.adaface = adaface
        if memory is not None:  # only then a submodule: other runs keep their state-dict keys
            self.memory = memory
        # The frozen teacher (the initial backbone) is not a submodule: never trained, never synced.
        self.__dict__["teacher"] = teacher
        self.cfg = cfg
        self.dist_info = dist_info
        self.body_frozen = body_frozen
        self.reducer = CountReducer(dist_info.world_size)

    # -- helpers -------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.body_frozen:
            self.model.backbone.eval()  # frozen body: BN statistics fixed (also the output layer's)
        if self.model.branch is not None:
            # the QAConv branch fine-tunes pretrained layers at a low lr: their BN statistics stay
            # the pretrained ones (so at step 0 the branch is exactly the frozen last stage)
            self.model.branch.eval()
        return self

    def _feature_map(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(feature_map [b, C, H, W], stage_map [b, C_s, H, W] for the QAConv branch, else None)."""
        dev = self._device()
        if "feature_map" in batch:
            stage = batch.get("stage_map")
            return (batch["feature_map"].to(dev, non_blocking=True).float(),
                    None if stage is None else stage.to(dev, non_blocking=True).float())
        from occtool.models import preprocess

        x = preprocess(batch["images"].numpy() if batch["images"].device.type == "cpu" else batch["images"],
                       self.model.backbone.input_spec, device=dev)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.body_frozen):
            return self.model.body(x)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _teacher_embedding(self, batch: dict) -> torch.Tensor:
        if "teacher" in batch:
            return batch["teacher"].float()
        from occtool.models import preprocess

        teacher = self.__dict__["teacher"]
        x = preprocess(batch["clean_images"].numpy(), teacher.input_spec, device=self._device())
        with torch.no_grad():
            return teacher(x).embedding.float()

    def visibility(self, occ: torch.Tensor, batch: dict) -> torch.Tensor | None:
        mode = self.cfg.loss.visibility
        if mode == "none":
            return None
        if mode == "ground_truth":
            gt = batch["feature_mask"].to(occ.device, occ.dtype)
            has = batch["has_mask"].to(occ.device).reshape(-1, 1, 1, 1)
            return torch.where(has, gt, torch.ones_like(gt))
        return occ.detach() if mode == "predicted_detached" else occ

    # -- the step ----------------------------------------------------------------------------
    def forward(self, batch: dict, weights: dict[str, float]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        dev = self._device()
        info = self.dist_info
        fm, stage = self._feature_map(batch)
        labels = batch["labels"].to(dev)
        ids = batch["ids"].to(dev)
        occ = self.model.head(fm)  # [b, 1, h, w]
        vis = self.visibility(occ, batch)
        parts: dict[str, torch.Tensor] = {}

        if weights.get("occlusion", 0.0) > 0:
            target = batch["feature_mask"].to(dev)
            if self.cfg.loss.occlusion_target == "binary":
                target = (target >= 0.5).to(target.dtype)
            parts["occlusion"] = occlusion_loss(occ.float(), target, batch["has_mask"].to(dev), reducer=self.reducer)

        if any(weights.get(k, 0.0) > 0 for k in ("adaface", "contrastive", "distill")):
            if self.cfg.loss.embedding == "occlusion_aware" and vis is not None:
                emb, norm = self.model.occlusion_aware_embedding(fm, vis)
            else:
                emb, norm = self.model.backbone.embed(fm)
            if weights.get("adaface", 0.0) > 0 and self.adaface is not None:
                with torch.autocast(device_type=dev.type, enabled=False):
                    parts["adaface"] = self.adaface(emb.float(), norm.float(), labels)
            if weights.get("contrastive", 0.0) > 0:
                all_emb = gather_with_grad(emb.float(), info)
                all_lab = _gather_ids(labels, info)
                all_ids = _gather_ids(ids, info)
                parts["contrastive"] = supervised_contrastive_loss(
                    emb.float(), labels, temperature=self.cfg.loss.contrastive_temperature,
                    gallery_embeddings=all_emb, gallery_labels=all_lab, anchor_ids=ids, gallery_ids=all_ids,
                    reducer=self.reducer,
                )
            if weights.get("distill", 0.0) > 0:
                target = self._teacher_embedding(batch).to(dev)
                parts["distill"] = embedding_distillation_loss(emb.float(), target, reducer=self.reducer)

        mm = None
        if self.matcher is not None and (weights.get("qaconv", 0.0) > 0 or weights.get("qaconv_memory", 0.0) > 0):
            mm = self.model.match_features(fm, stage)
        if weights.get("qaconv", 0.0) > 0 and self.matcher is not None:
            all_mm = gather_with_grad(mm, info)
            all_vis = None if vis is None else gather_with_grad(vis, info)
            logits = self.matcher.pair_logits(mm, all_mm, vis, all_vis)  # [b, B]
            parts["qaconv"] = qaconv_pair_loss(
                logits, labels, _gather_ids(labels, info), probe_ids=ids, gallery_ids=_gather_ids(ids, info),
                balanced=self.cfg.loss.qaconv_balanced, reducer=self.reducer,
            )
        if weights.get("qaconv_memory", 0.0) > 0 and self.matcher is not None:
            parts["qaconv_memory"] = self._memory_loss(mm, vis, labels)
        aux = {"visible_mean": occ.detach().float().mean()}
        return parts, aux

    def _memory_loss(self, mm: torch.Tensor, vis: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
        """The class-memory loss of this batch's maps, then the memory takes the (gathered) batch."""
        loss = self.memory.loss(self.matcher, mm, vis, labels, balanced=self.cfg.loss.qaconv_balanced,
                                reducer=self.reducer)
        self.memory.update(_gather_ids(mm.detach(), self.dist_info),
                           None if vis is None else _gather_ids(vis.detach(), self.dist_info),
                           _gather_ids(labels, self.dist_info))
        return loss


def _gather_ids(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    from occtool.training.distributed import gather_plain

    return gather_plain(x, info)
