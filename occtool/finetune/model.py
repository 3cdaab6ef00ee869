"""The fine-tuned model: which parameters train, and the module the training loop steps.

`FinetuneModule(batch)` -> (loss parts, diagnostics): supervised contrastive loss over the
identities of the (global) batch, plus the optional distillation anchor towards the frozen
starting network's embedding of each view's clean image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from occtool.losses.contrastive import supervised_contrastive_loss
from occtool.losses.distill import embedding_distillation_loss
from occtool.losses.masked import CountReducer
from occtool.models import preprocess
from occtool.training.distributed import DistInfo, gather_plain, gather_with_grad
from occtool.training.module import output_layer_names


def body_blocks(backbone: nn.Module) -> list[tuple[str, list[str]]]:
    """The body's blocks in forward order: (name, parameter names); a block is one element of the
    network's top-level sequences (or a top-level module); output-layer parameters are left out."""
    out_names = output_layer_names(backbone)
    net = backbone.net
    blocks: list[tuple[str, list[str]]] = []
    for name, child in net.named_children():
        parts = list(child.named_children()) if isinstance(child, nn.Sequential) and len(child) > 1 else [("", child)]
        for sub, module in parts:
            prefix = f"net.{name}" + (f".{sub}" if sub else "")
            params = [f"{prefix}.{n}" for n, _ in module.named_parameters()]
            params = [p for p in params if p not in out_names]
            if params:
                blocks.append((prefix, params))
    return blocks


def trainable_names(backbone: nn.Module, trainable: str) -> set[str]:
    """Backbone parameter names that train under `trainable` (all | output | last-N-stages)."""
    if trainable == "all":
        return {n for n, _ in backbone.named_parameters()}
    names = set(output_layer_names(backbone))
    if trainable.startswith("last-"):
        n = int(trainable.split("-")[1])
        for _, params in body_blocks(backbone)[-n:]:
            names.update(params)
    return names


def set_trainable(model: nn.Module, trainable: str) -> int:
    """Freeze everything of the FaceModel but the selected backbone parameters; returns how many train."""
    for p in model.parameters():
        p.requires_grad_(False)
    keep = trainable_names(model.backbone, trainable)
    count = 0
    for name, p in model.backbone.named_parameters():
        if name in keep:
            p.requires_grad_(True)
            count += p.numel()
    return count


class FinetuneModule(nn.Module):
    def __init__(self, *, model: nn.Module, temperature: float, distill: float, freeze_bn: bool, dist_info: DistInfo) -> None:
        super().__init__()
        self.model = model
        self.temperature, self.distill, self.freeze_bn = temperature, distill, freeze_bn
        self.dist_info = dist_info
        self.reducer = CountReducer(dist_info.world_size)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()  # running statistics stay those of the starting model
        return self

    def forward(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        backbone = self.model.backbone
        dev = next(backbone.parameters()).device
        x = preprocess(batch["images"].numpy(), backbone.input_spec, device=dev)
        emb = backbone(x).embedding.float()  # [b, D]
        labels, ids = batch["labels"].to(dev), batch["ids"].to(dev)
        info = self.dist_info
        parts = {"contrastive": supervised_contrastive_loss(
            emb, labels, temperature=self.temperature, gallery_embeddings=gather_with_grad(emb, info),
            gallery_labels=gather_plain(labels, info), anchor_ids=ids, gallery_ids=gather_plain(ids, info),
            reducer=self.reducer)}
        if self.distill > 0:
            parts["distill"] = embedding_distillation_loss(emb, batch["teacher"].to(dev), reducer=self.reducer)
        return parts, {"pair_similarity": pair_similarity(emb.detach(), labels, batch["degraded"].to(dev))}


def pair_similarity(emb: torch.Tensor, labels: torch.Tensor, degraded: torch.Tensor) -> torch.Tensor:
    """Mean cosine of the training pairs (degraded view, clean view of the same identity) in the
    batch: the number that rose to 0.999 in the story of a fine-tune that destroyed the model."""
    z = F.normalize(emb.float(), dim=1)
    same = labels.reshape(-1, 1) == labels.reshape(1, -1)
    pairs = same & degraded.reshape(-1, 1) & ~degraded.reshape(1, -1)
    if not pairs.any():
        return torch.tensor(float("nan"), device=emb.device)
    return (z @ z.t())[pairs].mean()
