"""Image degradations after occlusion (issue 12): off by default without drawing a random number,
seeded, within uint8, never moving the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from occtool.augment import DegradeConfig, Degradation, OcclusionSynthesizer
from occtool.augment.config import OccluderWeights, SynthesisConfig
from occtool.config import ConfigValueError

ALL = DegradeConfig(p=1.0, each=1.0)


def test_off_by_default_draws_nothing(face):
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert Degradation()(face, rng) is face and rng.bit_generator.state == state
    assert SynthesisConfig().degrade.p == 0.0


def test_seeded_changed_and_in_range(face):
    deg = Degradation(ALL)
    a = deg(face, np.random.default_rng(1))
    b = deg(face, np.random.default_rng(1))
    c = deg(face, np.random.default_rng(2))
    assert a.dtype == np.uint8 and a.shape == face.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, face)


@pytest.mark.parametrize("key, value", [("downscale", (0.2, 0.2)), ("blur", (2.0, 2.0)), ("noise", (6.0, 6.0)),
                                        ("jpeg_quality", (20, 20)), ("brightness", (3.0, 3.0)), ("contrast", (0.0, 0.0))])
def test_each_degradation_stays_in_range_and_keeps_the_shape(face, key, value):
    cfg = DegradeConfig(p=1.0, each=1.0, **{key: value})
    out = Degradation(cfg)(face, np.random.default_rng(4))
    assert out.dtype == np.uint8 and out.shape == face.shape and out.flags.c_contiguous
    # blur and low resolution lose detail: the image gets smoother
    if key in ("downscale", "blur"):
        rough = lambda im: np.abs(np.diff(im.astype(float), axis=1)).mean()  # noqa: E731
        assert rough(out) < 0.8 * rough(face)


def test_synthesizer_degrades_pixels_not_the_ground_truth(face):
    w = {k: 0.0 for k in OccluderWeights().as_dict()}
    w.update(rectangles=1.0, steam=1.0)
    plain = OcclusionSynthesizer(config=SynthesisConfig(weights=OccluderWeights(**w), keep_clean=0.3))
    worn = OcclusionSynthesizer(config=SynthesisConfig(weights=OccluderWeights(**w), keep_clean=0.3, degrade=ALL))
    changed = 0
    for seed in range(12):
        a = plain(face, rng=np.random.default_rng(seed))
        b = worn(face, rng=np.random.default_rng(seed))
        assert a.occluder == b.occluder and a.detail == b.detail
        np.testing.assert_array_equal(a.visibility, b.visibility)  # degradation draws come after the occluder's
        changed += not np.array_equal(a.image, b.image)
    assert changed == 12  # clean ones (occluder none) are degraded too
    assert np.array_equal(worn.degrade(face, np.random.default_rng(0)), Degradation(ALL)(face, np.random.default_rng(0)))


@pytest.mark.parametrize("kw", [dict(p=1.5), dict(each=-0.1), dict(downscale=(0.0, 0.5)), dict(jpeg_quality=(50, 10)),
                                dict(noise=(-1.0, 2.0))])
def test_bad_settings_name_the_key(kw):
    with pytest.raises(ConfigValueError, match=next(iter(kw))):
        DegradeConfig(**kw)


def test_cli_augment_degrade_moves_pixels_not_masks(tiny_tree, tmp_path, capsys):
    from occtool.augment import read_visibility_png
    from occtool.cli.app import run
    from occtool.data.images import read_image_rgb

    base = ["augment", str(tiny_tree), "--workers", "1", "--seed", "2", "--occluders", "rectangles", "--keep-clean", "0"]
    assert run(base + ["--out", str(tmp_path / "a")]) == 0
    assert run(base + ["--out", str(tmp_path / "b"), "--set", "degrade.p=1", "--set", "degrade.each=1"]) == 0
    for png in sorted((tmp_path / "a" / "masks").rglob("*.png")):
        rel = png.relative_to(tmp_path / "a" / "masks")
        np.testing.assert_array_equal(read_visibility_png(png), read_visibility_png(tmp_path / "b" / "masks" / rel))
        img = lambda root: read_image_rgb(root / "images" / rel)  # noqa: E731
        assert not np.array_equal(img(tmp_path / "a"), img(tmp_path / "b"))
    assert run(base + ["--out", str(tmp_path / "c"), "--set", "degrade.p=2"]) == 1
    err = capsys.readouterr().err
    assert "degrade.p" in err or "p:" in err or "'p'" in err
