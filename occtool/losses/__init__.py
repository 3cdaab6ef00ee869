"""Training losses (DESIGN piece 5): AdaFace, QAConv pairwise BCE, occlusion MSE, supervised
contrastive, embedding distillation, the visibility-masked reduction and the weighted total."""

from occtool.losses.adaface import AdaFaceLoss
from occtool.losses.contrastive import supervised_contrastive_loss
from occtool.losses.distill import embedding_distillation_loss
from occtool.losses.masked import CountReducer, masked_mean
from occtool.losses.occlusion import area_resize, occlusion_loss
from occtool.losses.qaconv_memory import QAConvClassMemory
from occtool.losses.qaconv_pair import pair_targets, qaconv_pair_loss
from occtool.losses.total import LOSS_NAMES, LossOutput, combine_losses

__all__ = [
    "AdaFaceLoss",
    "CountReducer",
    "LOSS_NAMES",
    "LossOutput",
    "QAConvClassMemory",
    "area_resize",
    "combine_losses",
    "embedding_distillation_loss",
    "masked_mean",
    "occlusion_loss",
    "pair_targets",
    "qaconv_pair_loss",
    "supervised_contrastive_loss",
]
