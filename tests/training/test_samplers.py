"""PK batch sampler: structure, determinism, DDP slicing, resumable position."""

from __future__ import annotations

import pytest

from occtool.data.samplers import PKBatchSampler
from occtool.errors import DataError

LABELS = [0] * 5 + [1] * 1 + [2] * 3 + [3] * 4 + [4] * 2 + [5] * 6 + [6] * 2 + [7] * 3


def test_pk_structure_and_epoch_coverage():
    s = PKBatchSampler(LABELS, p=3, k=2, seed=1)
    assert len(s) == 8 // 3
    seen = []
    for batch in s:
        assert len(batch) == 6
        ids = [LABELS[i] for i in batch]
        groups = [ids[j:j + 2] for j in range(0, 6, 2)]
        assert all(len(set(g)) == 1 for g in groups)  # K images of one identity
        assert len({g[0] for g in groups}) == 3  # P different identities
        seen += [g[0] for g in groups]
    assert len(seen) == len(set(seen))  # each identity at most once per epoch
    # the single-image identity repeats its only image
    s2 = PKBatchSampler([0, 1, 1], p=2, k=3, seed=0)
    batch = next(iter(s2))
    assert sorted(batch) == [0, 0, 0, 1, 1, 2]


def test_deterministic_per_seed_and_epoch():
    a = PKBatchSampler(LABELS, p=2, k=2, seed=7)
    b = PKBatchSampler(LABELS, p=2, k=2, seed=7)
    assert a.global_batches(0) == b.global_batches(0)
    assert a.global_batches(0) != a.global_batches(1)
    assert a.global_batches(0) != PKBatchSampler(LABELS, p=2, k=2, seed=8).global_batches(0)


def test_ranks_slice_the_same_global_batch():
    full = list(PKBatchSampler(LABELS, p=4, k=2, seed=3))
    r0 = list(PKBatchSampler(LABELS, p=4, k=2, seed=3, rank=0, world_size=2))
    r1 = list(PKBatchSampler(LABELS, p=4, k=2, seed=3, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1)] == full
    with pytest.raises(ValueError):
        PKBatchSampler(LABELS, p=3, k=1, world_size=2)


def test_state_resumes_mid_epoch():
    s = PKBatchSampler(LABELS, p=2, k=2, seed=5, batches_per_epoch=4)
    it = iter(s)
    first = [next(it), next(it)]
    state = s.state_dict()
    rest = list(it)
    t = PKBatchSampler(LABELS, p=2, k=2, seed=5, batches_per_epoch=4)
    t.load_state_dict(state)
    assert list(t) == rest
    assert first + rest == PKBatchSampler(LABELS, p=2, k=2, seed=5, batches_per_epoch=4).global_batches(0)
    assert t.epoch == 1 and t.position == 0


def test_too_few_identities():
    with pytest.raises(DataError):
        PKBatchSampler([0, 0, 1], p=3, k=2)
    with pytest.raises(DataError):
        PKBatchSampler(LABELS, p=8, k=2, min_images=3)
