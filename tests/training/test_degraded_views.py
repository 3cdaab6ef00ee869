"""Feature-cache views with `data.occlusion.degrade` (issue 12): the teacher's clean views 0 and 1
stay pristine, later clean views are degraded but stay all-visible, occluded views keep exact masks."""

from __future__ import annotations

import numpy as np

from occtool.augment import OcclusionSynthesizer
from occtool.config import load_config
from occtool.data.images import list_identity_tree
from occtool.training import TrainConfig
from occtool.training.data import ImageLoader, cache_view_stream
from tests.training.conftest import SMOKE


def _views(tree, degrade: float):
    cfg = load_config(TrainConfig, yaml_path=SMOKE, overrides=[
        f"data.train_root={tree}", "device=cpu", "data.cache_views=5", "data.cache_clean_views=3",
        f"data.occlusion.degrade.p={degrade}", "data.occlusion.degrade.each=1", "data.occlusion.weights.medical_mask=0"])
    records = list_identity_tree(tree)[:2]
    loader = ImageLoader(records, synthesizer=OcclusionSynthesizer(config=cfg.data.occlusion), mask_root=None, flip=True)
    meta = [(i, v, view) for i, views in cache_view_stream(loader, 2, cfg, workers=1) for v, view in enumerate(views)]
    return loader, meta


def test_clean_views_0_1_pristine_later_clean_views_degraded(lfw_six):
    loader, meta = _views(lfw_six, 1.0)
    _, plain = _views(lfw_six, 0.0)
    for (i, v, view), (_, _, ref) in zip(meta, plain):
        img = loader.image(i)
        if v == 0:
            np.testing.assert_array_equal(view.image, img)
        elif v == 1:
            np.testing.assert_array_equal(view.image, img[:, ::-1])
        elif v == 2:  # clean, degraded: every pixel may move, nothing is occluded
            assert not np.array_equal(view.image, img) and view.visibility.min() == 1.0 and view.has_mask
            np.testing.assert_array_equal(ref.image, img)  # without degrade: the clean image
        else:
            assert view.visibility.min() < 1.0 and view.image.dtype == np.uint8
