"""The contract every registered occluder meets (parametrised over `list_occluders()`, so a new
occluder file is checked without touching this file): the visibility agrees with the pixels and
is in [0, 1], the occlusion class is the registered one, opaque cores are exactly 0 (partial
values only on anti-aliased rims), transparent ones show the face through, results are seeded."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.augment import Rectangles, Steam, composite, create_occluder, list_occluders, occluder_class
from occtool.data.landmarks import template_for_size
from occtool.errors import ShapeError
from tests.augment.conftest import synthetic_face
from tests.conftest import shared_or_skip

SEEDS = range(12)


def make(name: str, **kw):
    if name in ("medical_mask", "real_mask"):
        shared_or_skip("occluders", "masktheface", "masks.cfg")
    return create_occluder(name, **kw)


def assert_agrees(original: np.ndarray, res) -> None:
    """pixels changed <=> visibility < 1; visibility on the 1/255 grid, in [0, 1]."""
    vis = res.visibility
    assert res.image.dtype == np.uint8 and res.image.shape == original.shape
    assert vis.dtype == np.float32 and vis.shape == original.shape[:2]
    assert vis.min() >= 0.0 and vis.max() <= 1.0
    assert np.allclose(vis * 255, np.rint(vis * 255), atol=1e-4)
    changed = np.any(res.image != original, axis=2)
    np.testing.assert_array_equal(changed, vis < 1.0)


@pytest.mark.parametrize("name", list_occluders())
def test_mask_agrees_with_pixels(name, face):
    occ = make(name)
    assert occ.name == name and occ.occlusion_class == occluder_class(name)
    for seed in SEEDS:
        res = occ(face, rng=np.random.default_rng(seed))
        assert_agrees(face, res)
        assert res.occluder == name
        assert res.occluded_fraction > 0.005, f"{name} seed {seed} occluded nothing"
        assert res.occlusion_class == occluder_class(name)


@pytest.mark.parametrize("name", list_occluders("opaque"))
def test_opaque_occluders_fully_hide_their_core(name, face):
    occ = make(name)
    for seed in SEEDS:
        vis = occ(face, rng=np.random.default_rng(seed)).visibility
        covered = vis < 1
        # opaque: the inside is 0; only an anti-aliased rim is partial
        assert (vis[covered] == 0).mean() > 0.6, f"{name} seed {seed}"


@pytest.mark.parametrize("name", list_occluders("transparent"))
def test_transparent_occluders_let_the_face_show_through(name, face):
    occ = make(name)
    partial_total = 0
    for seed in SEEDS:
        res = occ(face, rng=np.random.default_rng(seed))
        vis = res.visibility
        partial = (vis > 0.25) & (vis < 0.75)
        partial_total += int(partial.sum())
        assert ((vis > 0) & (vis < 1)).any()
        # a transparent occluder hides nothing completely but an eyeglass frame
        assert (vis == 0).mean() < 0.05, f"{name} seed {seed}"
    assert partial_total > 200


def test_transparent_visibility_is_one_minus_opacity_of_the_blend(face):
    layer = np.full(face.shape, 250.0, np.float32)
    alpha = np.zeros(face.shape[:2], np.float32)
    alpha[10:40, 20:60] = 0.4
    out, vis = composite(face, layer, alpha)
    a = np.float32(102) / 255  # 0.4 quantised to 1/255
    expected = np.rint(face[10:40, 20:60].astype(np.float32) * (1 - a) + 250 * a)
    diff = np.abs(out[10:40, 20:60].astype(int) - expected.astype(int))
    assert diff.max() <= 1  # +-1 only where the blend equalled the original (nudged)
    assert np.allclose(vis[10:40, 20:60], 1 - a) and (vis[alpha == 0] == 1).all()


def test_composite_nudges_unchanged_covered_pixels():
    img = np.full((8, 8, 3), 100, np.uint8)
    layer = np.full((8, 8, 3), 100.0, np.float32)  # same colour as the image
    alpha = np.ones((8, 8), np.float32)
    out, vis = composite(img, layer, alpha)
    assert (vis == 0).all() and np.all(np.any(out != img, axis=2))
    assert np.abs(out.astype(int) - img).max() == 1


@pytest.mark.parametrize("name", list_occluders())
def test_same_rng_seed_same_result_and_seeds_differ(name, face):
    occ = make(name)
    a = occ(face, rng=np.random.default_rng(7))
    b = occ(face, rng=np.random.default_rng(7))
    c = occ(face, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.visibility, b.visibility)
    assert not np.array_equal(a.visibility, c.visibility) or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("name", list_occluders())
def test_probability_gate(name, face):
    never = make(name, p=0.0)
    res = never(face, rng=np.random.default_rng(0))
    assert res.occluder == "none" and res.occlusion_class == "none"
    np.testing.assert_array_equal(res.image, face)
    assert (res.visibility == 1).all()
    half = make(name, p=0.5)
    hits = sum(half(face, rng=np.random.default_rng(s)).occluder == name for s in range(40))
    assert 8 <= hits <= 32


@pytest.mark.parametrize("name", ["sunglasses", "hand", "scarf", "eyeglasses", "visor", "medical_mask"])
def test_occluders_follow_the_landmarks(name):
    """Shift the face: the occluder moves with the given landmarks."""
    img = synthetic_face(320, seed=1)
    lm = template_for_size((112, 112)) + 80
    a = make(name)(img, landmarks=lm, rng=np.random.default_rng(3)).visibility < 1
    b = make(name)(img, landmarks=lm + [40, 30], rng=np.random.default_rng(3)).visibility < 1
    if name in ("hand", "scarf"):  # arm / scarf run off the image: compare the top edge only
        top_a, top_b = np.argwhere(a)[:, 0].min(), np.argwhere(b)[:, 0].min()
        assert abs((top_b - top_a) - 30) <= 2
    else:
        np.testing.assert_allclose(np.argwhere(b).mean(0) - np.argwhere(a).mean(0), [30, 40], atol=1.5)


def test_works_on_other_image_sizes():
    img = synthetic_face(250, seed=2)
    for name in ("sunglasses", "hand", "scarf", "eyeglasses", "steam", "liquid", "visor", "rectangles"):
        res = make(name)(img, rng=np.random.default_rng(0))
        assert_agrees(img, res)


def test_rectangles_count_and_size_ranges(face):
    occ = Rectangles(count=(2, 2), size=(0.2, 0.2), fills=["solid"])
    for seed in range(10):
        res = occ(face, rng=np.random.default_rng(seed))
        assert res.detail.startswith("2x")
        rows = np.flatnonzero((res.visibility < 1).any(axis=1))
        assert 22 <= rows.size <= 2 * 22 + 1
    with pytest.raises(ValueError, match="count"):
        Rectangles(count=(0, 2))
    with pytest.raises(ValueError, match="size"):
        Rectangles(size=(0.5, 0.2))
    with pytest.raises(ValueError, match="fills"):
        Rectangles(fills=["plaid"])


def test_transparent_opacity_range_is_respected(face):
    occ = Steam(opacity=(0.4, 0.5))
    for seed in range(6):
        vis = occ(face, rng=np.random.default_rng(seed)).visibility
        assert vis.min() >= 0.5 - 1 / 255 - 1e-6
    with pytest.raises(ValueError, match="opacity"):
        Steam(opacity=(0.0, 1.0))


def test_bad_inputs_are_clear(face):
    occ = create_occluder("sunglasses")
    with pytest.raises(ShapeError, match="landmarks"):
        occ(face, landmarks=np.zeros((4, 2)), rng=np.random.default_rng(0))
    with pytest.raises(ShapeError, match="image"):
        occ(face[..., 0], rng=np.random.default_rng(0))
    with pytest.raises(ShapeError, match="image"):
        occ(face.astype(np.float32), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        occ(face, rng=0)
