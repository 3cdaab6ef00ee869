from pathlib import Path

import numpy as np
import pytest

from occtool.classify.data import Sample, pick_people, split_samples
from occtool.errors import DataError


def _samples(people: int, per_person: int = 2, prefix: str = "a") -> list[Sample]:
    return [Sample(Path(f"{prefix}/p{p:02d}_{k}.png"), (p + k) % 3, f"p{p:02d}") for p in range(people) for k in range(per_person)]


def test_pick_people_is_seeded_and_order_free():
    samples = _samples(30)
    first = pick_people(samples, count=5, seed=7)
    assert len(first) == 5 and first == pick_people(list(reversed(samples)), count=5, seed=7)
    assert first != pick_people(samples, count=5, seed=8)
    assert pick_people(samples, count=30, seed=0) == {s.identity for s in samples}
    with pytest.raises(DataError, match="only 30"):
        pick_people(samples, count=31, seed=0)


def test_split_people_are_disjoint_and_every_face_is_placed_once():
    samples = _samples(40)
    test_people = {f"p{p:02d}" for p in range(0, 40, 4)}
    split = split_samples([samples], test_people=test_people, val_count=6, val_seed=1, val_named=["p01"])
    pool = split.pool
    train = {pool[i].identity for i in split.rows("train")}
    val = {pool[i].identity for i in split.rows("validation")}
    test = {s.identity for s in split.test}
    assert test == test_people and len(val) == 7 and "p01" in val
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(split.rows("train")) + len(split.rows("validation")) + len(split.test) == len(samples)
    again = split_samples([list(reversed(samples))], test_people=test_people, val_count=6, val_seed=1, val_named=["p01"])
    assert again.val_people == split.val_people


def test_extra_sources_add_training_faces_only():
    primary, extra = _samples(20), _samples(20, prefix="b")
    split = split_samples([primary, extra], test_people={"p00", "p01"}, val_count=3, val_seed=0)
    alone = split_samples([primary], test_people={"p00", "p01"}, val_count=3, val_seed=0)
    pool = split.pool
    assert split.val_people == alone.val_people and split.test == alone.test
    val_faces = [pool[i] for i in split.rows("validation")]
    assert all(str(s.path).startswith("a/") for s in val_faces) and len(val_faces) == 3 * 2
    train_faces = [pool[i] for i in split.rows("train")]
    assert len(train_faces) == 2 * (20 - 2 - 3) * 2
    assert not {s.identity for s in train_faces} & (split.val_people | split.test_people)
    assert np.array_equal(split.rows("train")[: 30], alone.rows("train"))


def test_split_rejects_a_person_in_validation_and_test():
    with pytest.raises(DataError, match="validation and test people must differ"):
        split_samples([_samples(5)], test_people={"p01"}, val_count=0, val_seed=0, val_named=["p01"])
