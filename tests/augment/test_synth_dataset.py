"""OcclusionSynthesizer (probabilities, config) and OccludedFaceDataset (on-the-fly, determinism)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occtool.augment import (
    OCCLUDER_NAMES,
    OccluderWeights,
    OcclusionSynthesizer,
    SynthesisConfig,
    feature_mask,
)
from occtool.augment.occluders import default_occluder_weights
from occtool.config import load_config
from occtool.data.images import ImageRecord, list_identity_tree
from occtool.errors import ConfigError
from tests.augment.conftest import synthetic_face

NO_MASKS = {n: 0.0 for n in OCCLUDER_NAMES} | {"sunglasses": 1.0, "steam": 1.0, "rectangles": 1.0}


def synth(**weights) -> OcclusionSynthesizer:
    cfg = SynthesisConfig(weights=OccluderWeights(**(NO_MASKS | weights)))
    return OcclusionSynthesizer(config=cfg)


def test_probabilities_and_keep_clean(face):
    s = synth(sunglasses=3.0, steam=1.0, rectangles=0.0)
    s.config.keep_clean = 0.2
    counts = Counter(s(face, rng=np.random.default_rng(i)).occluder for i in range(400))
    assert set(counts) == {"none", "sunglasses", "steam"}
    assert 50 <= counts["none"] <= 115
    assert counts["sunglasses"] > 2 * counts["steam"]
    s.config.keep_clean = 1.0
    assert {s(face, rng=np.random.default_rng(i)).occluder for i in range(20)} == {"none"}


def test_all_default_occluders_are_drawn(masktheface_dir, face):
    s = OcclusionSynthesizer()
    seen = Counter(s(face, rng=np.random.default_rng(i)).occluder for i in range(300))
    on_by_default = {n for n, w in default_occluder_weights().items() if w > 0}
    assert "real_mask" in OCCLUDER_NAMES and "real_mask" not in on_by_default  # opt-in (issue 12)
    assert set(seen) == on_by_default | {"none"}


def test_config_errors():
    with pytest.raises(ConfigError, match="no occluder"):
        OcclusionSynthesizer(config=SynthesisConfig(weights=OccluderWeights(**{n: 0.0 for n in OCCLUDER_NAMES})))
    with pytest.raises(ConfigError, match="keep_clean"):
        OcclusionSynthesizer(config=SynthesisConfig(weights=OccluderWeights(**NO_MASKS), keep_clean=1.5))
    with pytest.raises(ConfigError, match="rectangles"):
        cfg = load_config(SynthesisConfig, overrides=["rectangles.count=[0,2]"])
        OcclusionSynthesizer(config=cfg)
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(SynthesisConfig, overrides=["weights.snorkel=1"])
    cfg = load_config(SynthesisConfig, overrides=["weights.hand=0", "transparent.opacity=[0.4,0.6]"])
    assert cfg.weights.hand == 0.0 and cfg.weights.sunglasses > 0 and cfg.transparent.opacity == (0.4, 0.6)


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for person in ("ann", "bob"):
        (root / person).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(synthetic_face(seed=k + (10 if person == "bob" else 0))).save(root / person / f"{k}.png")
    return root


def test_dataset_is_deterministic_per_seed_epoch_index(small_tree):
    from occtool.augment import OccludedFaceDataset

    records = list_identity_tree(small_tree)
    ds = OccludedFaceDataset(records, synthesizer=synth(), seed=5)
    a, b = ds[2], ds[2]
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["label"] == 0 and ds[4]["label"] == 1 and ds.num_classes == 2
    assert a["has_mask"] is True and a["visibility"].shape == (112, 112) and a["feature_mask"].shape == (7, 7)
    np.testing.assert_allclose(a["feature_mask"], feature_mask(a["visibility"]))
    # a fresh dataset (another worker) gives the same sample; another epoch gives another draw
    np.testing.assert_array_equal(OccludedFaceDataset(records, synthesizer=synth(), seed=5)[2]["image"], a["image"])
    draws = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        draws.append(ds[2]["visibility"])
    assert any(not np.array_equal(draws[0], d) for d in draws[1:])
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[2]["visibility"], draws[0])


def test_dataset_with_a_dataloader(small_tree):
    import torch

    from occtool.augment import OccludedFaceDataset

    ds = OccludedFaceDataset(list_identity_tree(small_tree), synthesizer=synth(), seed=1)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 112, 112, 3) and batch["image"].dtype == torch.uint8
    assert batch["feature_mask"].shape == (4, 7, 7) and batch["has_mask"].dtype == torch.bool
    assert batch["label"].tolist() == [0, 0, 0, 1]


def test_dataset_without_masks_and_clean_has_mask(small_tree):
    from occtool.augment import OccludedFaceDataset

    records = list_identity_tree(small_tree)
    plain = OccludedFaceDataset(records)[0]
    assert plain["has_mask"] is False and (plain["visibility"] == 1).all() and plain["occluder"] == "none"
    s = synth()
    s.config.keep_clean = 1.0
    item = OccludedFaceDataset(records, synthesizer=s, clean_has_mask=False)[0]
    assert item["has_mask"] is False
    assert OccludedFaceDataset(records, synthesizer=s)[0]["has_mask"] is True


def test_dataset_reads_masks_of_an_augment_output(small_tree, tmp_path):
    from occtool.augment import AugmentConfig, OccludedFaceDataset, augment_tree, read_visibility_png

    cfg = AugmentConfig(weights=OccluderWeights(**NO_MASKS), keep_clean=0.0, workers=1)
    out = tmp_path / "aug"
    augment_tree(small_tree, out, cfg)
    records = list_identity_tree(out / "images")
    ds = OccludedFaceDataset(records, mask_root=out / "masks")
    item = ds[1]
    assert item["has_mask"] is True and item["occluder"] in NO_MASKS and item["occlusion_class"] != "unknown"
    vis = read_visibility_png(out / "masks" / records[1].relpath)
    np.testing.assert_array_equal(item["visibility"], vis)
    np.testing.assert_allclose(item["feature_mask"], np.load(out / "masks7" / records[1].relpath.with_suffix(".npy")), atol=1e-7)
    # the image is the stored one (no second occlusion on top)
    changed = np.any(item["image"] != np.asarray(Image.open(small_tree / records[1].relpath)), axis=2)
    np.testing.assert_array_equal(changed, vis < 1)
    # a record without a mask file falls back to the synthesizer, or to "no ground truth"
    extra = ImageRecord(small_tree / "ann" / "0.png", "ann", Path("ann/0.png"))
    ds2 = OccludedFaceDataset([extra], mask_root=tmp_path / "nowhere")
    assert ds2[0]["has_mask"] is False
