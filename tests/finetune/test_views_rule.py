"""P x K training views (degraded share, seeds, DDP slices), the sampler's few-images handling,
the training-pair similarity and the best-epoch rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.data.images import list_identity_tree
from occtool.data.samplers import PKBatchSampler
from occtool.errors import DataError
from occtool.finetune.config import DegradeConfig, DegradationWeights
from occtool.finetune.degrade import Degrader
from occtool.finetune.model import pair_similarity
from occtool.finetune.task import accepts
from occtool.finetune.views import ViewMaker
from occtool.training.data import ImageLoader


def _maker(tree, *, k=3, fraction=0.5, seed=0):
    records = list_identity_tree(tree)
    labels = np.array([sorted({r.identity for r in records}).index(r.identity) for r in records])
    loader = ImageLoader(records, synthesizer=None, mask_root=None, flip=True)
    deg = Degrader(DegradeConfig(weights=DegradationWeights(occlusion=0.0, low_res=1.0, noise=1.0)))
    return ViewMaker(loader, degrader=deg, restorer=None, k=k, fraction=fraction, flip=True, seed=seed), labels


def test_views_degrade_the_configured_share_of_each_identity(ft_tree):
    maker, labels = _maker(ft_tree, k=3, fraction=0.5)
    sampler = PKBatchSampler(labels, p=4, k=3, seed=0)
    batch_idx = sampler.global_batches(0)[0]
    b = maker.batch(batch_idx, labels, epoch=0, step=0, lo=0, hi=12)
    assert b["images"].shape == (12, 112, 112, 3) and b["images"].dtype == torch.uint8
    deg = b["degraded"].numpy().reshape(4, 3)
    assert (deg.sum(1) == 2).all()  # round(0.5 * 3) = 2 of each identity's 3 views, one clean
    for j in range(12):
        same = torch.equal(b["images"][j], b["clean_images"][j])
        assert same != bool(b["degraded"][j])
        assert (b["kinds"][j] == "none") == (not b["degraded"][j])
    again = maker.batch(batch_idx, labels, epoch=0, step=0, lo=0, hi=12)
    assert torch.equal(again["images"], b["images"])  # pure function of (seed, epoch, step, position)
    other = maker.batch(batch_idx, labels, epoch=0, step=1, lo=0, hi=12)
    assert not torch.equal(other["images"], b["images"])
    half = maker.batch(batch_idx, labels, epoch=0, step=0, lo=6, hi=12)  # a second process's slice
    assert torch.equal(half["images"], b["images"][6:]) and half["ids"].tolist() == list(range(6, 12))


def test_sampler_batches_and_few_images_replace_or_skip():
    labels = [0] * 4 + [1] * 1 + [2] * 3 + [3] * 4 + [4] * 2 + [5] * 5
    rep = PKBatchSampler(labels, p=2, k=3, seed=0, min_images=1)
    for batch in rep.global_batches(0):
        ids = [labels[i] for i in batch]
        assert ids[0:3] == [ids[0]] * 3 and ids[3:6] == [ids[3]] * 3 and ids[0] != ids[3]
    assert len(rep.identities) == 6
    skip = PKBatchSampler(labels, p=2, k=3, seed=0, min_images=3)
    assert skip.identities == [0, 2, 3, 5]
    for batch in skip.global_batches(0):
        assert all(labels.count(labels[i]) >= 3 for i in batch)
        assert len(set(batch)) == len(batch)  # enough images: no repeats
    with pytest.raises(DataError):
        PKBatchSampler(labels, p=5, k=3, min_images=3)


def test_pair_similarity_is_degraded_vs_clean_of_one_identity():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    degraded = torch.tensor([True, False, True, False])
    # pairs (0 -> 1): cos 0; (2 -> 3): cos 1/sqrt(2)
    assert float(pair_similarity(e, labels, degraded)) == pytest.approx((0 + 2 ** -0.5) / 2)
    assert torch.isnan(pair_similarity(e, labels, torch.zeros(4, dtype=torch.bool)))


def test_best_epoch_rule():
    start = {"clean/rank1": 0.95, "degraded/rank1": 0.60}
    best0 = {"clean/rank1": 0.95, "degraded/rank1": 0.60}
    assert accepts(start, {}, start_clean=0.95, clean_margin_points=0.5)  # epoch 0 is the first best
    up = {"clean/rank1": 0.946, "degraded/rank1": 0.70}  # clean -0.4 points: allowed
    assert accepts(up, best0, start_clean=0.95, clean_margin_points=0.5)
    too_much = {"clean/rank1": 0.944, "degraded/rank1": 0.90}  # clean -0.6 points: refused
    assert not accepts(too_much, best0, start_clean=0.95, clean_margin_points=0.5)
    equal = {"clean/rank1": 0.99, "degraded/rank1": 0.60}  # must beat, not tie
    assert not accepts(equal, best0, start_clean=0.95, clean_margin_points=0.5)
    assert accepts(too_much, best0, start_clean=0.95, clean_margin_points=1.0)


def test_warning_when_pair_similarity_rises_while_validation_falls():
    from types import SimpleNamespace

    from occtool.finetune.config import FinetuneConfig
    from occtool.finetune.task import ContrastiveFinetuning

    said = []
    task = ContrastiveFinetuning(FinetuneConfig())
    task.env = SimpleNamespace(say=said.append)
    task.start_similarity = 0.55  # the first step's similarity, with the starting weights
    task.prev = {"clean/rank1": 0.99, "degraded/rank1": 0.70}
    bad = {"clean/rank1": 0.40, "degraded/rank1": 0.30, "train/pair_similarity": 0.95}
    task._check_trap(1, bad)
    assert bad["warning/similarity_up_validation_down"] == 1.0 and "memorised" in said[-1]
    task.prev = dict(bad)
    good = {"clean/rank1": 0.50, "degraded/rank1": 0.40, "train/pair_similarity": 0.97}
    task._check_trap(2, good)  # similarity up and validation up: no warning
    assert "warning/similarity_up_validation_down" not in good and len(task.warnings) == 1
