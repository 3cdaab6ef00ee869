"""`real_mask` (issue 12): every option seeded, opaque where it covers, within its ranges, and the
defaults of everything else untouched (it is off unless its weight is set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from occtool.augment import MedicalMask, OcclusionSynthesizer, RealMask, create_occluder, feature_mask
from occtool.augment.config import OccluderWeights, RealMaskConfig, SynthesisConfig
from occtool.cli.app import run
from occtool.config import ConfigValueError
from occtool.data.landmarks import template_for_size
from tests.augment.conftest import synthetic_face

PLAIN = dict(recolor=0.0, lift=(0.0, 0.0), widen=(1.0, 1.0), drop=(0.0, 0.0), jitter=0.0, relight=(0.0, 0.0),
             folds=(0.0, 0.0), edge_blur=(0.0, 0.0), straps=0.0)


def _all_options(**kw):
    opts = dict(recolor=1.0, patterns=1.0, lift=(0.1, 0.3), widen=(1.05, 1.2), drop=(0.0, 0.1), jitter=0.05,
                relight=(0.5, 1.0), folds=(0.03, 0.1), edge_blur=(0.02, 0.05), straps=1.0)
    opts.update(kw)
    return opts


def test_seeded_and_varied(masktheface_dir, face):
    occ = RealMask(templates_dir=masktheface_dir, **_all_options())
    a = occ(face, rng=np.random.default_rng(5))
    b = occ(face, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.visibility, b.visibility)
    assert a.detail == b.detail and "+straps" in a.detail
    others = [occ(face, rng=np.random.default_rng(s)) for s in range(6, 12)]
    assert all(not np.array_equal(o.visibility, a.visibility) for o in others)
    assert len({o.detail for o in others + [a]}) > 2  # templates, patterns vary with the seed


def test_plain_settings_reproduce_the_medical_mask_coverage(masktheface_dir, face):
    """No slack, no blur, no straps: the same template on the same anchors as medical_mask."""
    for mask_type in ("surgical", "N95", "cloth"):
        plain = RealMask(types=[mask_type], templates_dir=masktheface_dir, **PLAIN)
        medical = MedicalMask(types=[mask_type], templates_dir=masktheface_dir)
        vp = plain(face, rng=np.random.default_rng(0)).visibility
        vm = medical(face, rng=np.random.default_rng(0)).visibility
        assert np.abs(vp - vm).max() <= 1.0 / 255 + 1e-6  # at most one grey level on a rim pixel
        assert (vp != vm).mean() < 0.002


@pytest.mark.parametrize("seed", range(6))
def test_opaque_core_and_value_ranges(masktheface_dir, face, seed):
    res = RealMask(templates_dir=masktheface_dir, **_all_options(straps=0.0, edge_blur=(0.0, 0.03)))(face, rng=np.random.default_rng(seed))
    vis = res.visibility
    assert res.image.dtype == np.uint8 and vis.dtype == np.float32 and 0.0 <= vis.min() and vis.max() <= 1.0
    np.testing.assert_array_equal(np.any(res.image != face, axis=2), vis < 1.0)
    # opaque: nose tip and mouth fully hidden, the eyes untouched, the mask body exactly 0
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = np.rint(template_for_size((112, 112))).astype(int)
    assert vis[ny, nx] == 0.0 and vis[mly, mlx] == 0.0 and vis[mry, mrx] == 0.0
    assert vis[ley - 2: ley + 2, lex - 2: lex + 3].min() == 1.0 and vis[rey - 2: rey + 2, rex - 2: rex + 3].min() == 1.0
    assert (vis[vis < 1] == 0).mean() > 0.6
    assert feature_mask(vis)[5, 3] == 0.0  # the mouth cell of the 7x7 map


def test_soft_edges_and_straps_only_add_partial_rims_and_loops(masktheface_dir, face):
    sharp = RealMask(templates_dir=masktheface_dir, **{**PLAIN, "edge_blur": (0.0, 0.0)})
    soft = RealMask(templates_dir=masktheface_dir, **{**PLAIN, "edge_blur": (0.08, 0.08)})
    strapped = RealMask(templates_dir=masktheface_dir, **{**PLAIN, "straps": 1.0})
    v0, v1, v2 = (o(face, rng=np.random.default_rng(3)).visibility for o in (sharp, soft, strapped))
    partial = lambda v: int(((v > 0) & (v < 1)).sum())  # noqa: E731
    assert partial(v1) > 2 * partial(v0)
    assert np.array_equal(v1 == 0, v1 == 0) and (v0 == 0).sum() > (v1 == 0).sum() * 0.9
    assert (v2 <= v0).all() and (v2 < v0).sum() > 20  # loops only add cover, outside the mask


def test_lift_raises_the_top_edge(masktheface_dir, face):
    low = RealMask(templates_dir=masktheface_dir, types=["surgical"], **PLAIN)
    high = RealMask(templates_dir=masktheface_dir, types=["surgical"], **{**PLAIN, "lift": (0.3, 0.3)})
    top = lambda v: int(np.flatnonzero((v < 0.5).any(axis=1))[0])  # noqa: E731
    a = low(face, rng=np.random.default_rng(0)).visibility
    b = high(face, rng=np.random.default_rng(0)).visibility
    assert top(b) < top(a) - 3


def test_recolour_changes_the_colour_not_the_coverage(masktheface_dir):
    face = synthetic_face(seed=1)
    base = RealMask(templates_dir=masktheface_dir, types=["surgical_blue"], **PLAIN)
    painted = RealMask(templates_dir=masktheface_dir, types=["surgical_blue"], **{**PLAIN, "recolor": 1.0})
    a, b = base(face, rng=np.random.default_rng(2)), painted(face, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a.visibility, b.visibility)
    core = a.visibility == 0
    assert "recolored" in b.detail
    assert np.abs(a.image[core].astype(float).mean(0) - b.image[core].astype(float).mean(0)).max() > 10


def test_off_by_default_and_configurable():
    assert OccluderWeights().real_mask == 0.0
    assert "real_mask" not in OcclusionSynthesizer().names
    with pytest.raises(ConfigValueError, match="lift"):
        RealMaskConfig(lift=(0.4, 0.1))
    with pytest.raises(ConfigValueError, match="straps"):
        RealMaskConfig(straps=1.5)
    cfg = SynthesisConfig(real_mask=RealMaskConfig(types=["KN95"], recolor=0.0, straps=0.0))
    occ = create_occluder("real_mask", cfg)
    assert occ.types == ("KN95",) and occ.recolor == 0.0 and occ.straps == 0.0


def test_cli_augment_real_mask_and_bad_option(masktheface_dir, tiny_tree: Path, tmp_path: Path, capsys):
    out = tmp_path / "real"
    argv = ["augment", str(tiny_tree), "--out", str(out), "--workers", "1", "--occluders", "real_mask", "--keep-clean", "0",
            "--set", "real_mask.straps=1"]
    assert run(argv) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows and all(r["occluder"] == "real_mask" and r["occlusion_class"] == "opaque" for r in rows)
    assert all("+straps" in r["detail"] for r in rows)
    assert run(argv[:-1] + ["real_mask.lift=[0.5,0.1]", "--force"]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "lift" in err and "Traceback" not in err
