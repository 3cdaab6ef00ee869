"""Embedding distillation: the student's embedding of an (occluded) view should point where the
frozen teacher's embedding of the clean view points.

    L = mean_i (1 - cos(student_i, teacher_i))    over valid samples (masked reduction)

Used to train the occlusion-aware embedding `embed(fm * v)` without identity labels: the
teacher is the pretrained backbone on the unoccluded image, so the student learns to give, from
the visible part only, the embedding the whole face would have had. Nothing of the training
identities is memorised (no class centres), which matters on small training sets.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from occtool.errors import check_shape
from occtool.losses.masked import CountReducer, acc, masked_mean


def embedding_distillation_loss(
    student: Tensor, teacher: Tensor, valid: Tensor | None = None, *, reducer: CountReducer | None = None
) -> Tensor:
    """student [B, D] (any norm, gradient flows), teacher [B, D] (detached here), valid [B] or None."""
    check_shape("student embeddings", student.shape, "[B, D]", student.dim() == 2)
    check_shape("teacher embeddings", teacher.shape, f"{list(student.shape)}", teacher.shape == student.shape)
    s = F.normalize(acc(student), dim=1)
    t = F.normalize(acc(teacher.detach()), dim=1).to(s.dtype)
    return masked_mean(1.0 - (s * t).sum(dim=1), valid, reducer=reducer)
