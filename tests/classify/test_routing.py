import pytest

from occtool.classify.config import PredictConfig
from occtool.classify.routing import frame_route, route_face, routing_report
from occtool.errors import ConfigError


def test_each_class_takes_its_route_and_low_confidence_falls_back():
    cfg = PredictConfig(min_confidence=0.6, fallback_route="slow")
    assert route_face("none", 0.9, cfg) == ("fast", False)
    assert route_face("opaque", 0.6, cfg) == ("mask_aware", False)  # at the threshold: not a fallback
    assert route_face("transparent", 0.99, cfg) == ("slow", False)
    assert route_face("none", 0.59, cfg) == ("slow", True)
    cfg = PredictConfig(min_confidence=0.6)  # default fallback: mask_aware (the seed note's choice)
    assert route_face("none", 0.4, cfg) == ("mask_aware", True)


def test_routes_are_configurable_and_checked():
    from occtool.cli.common import build_config

    cfg = build_config(PredictConfig, None, ["routes.opaque=slow", "costs.slow=2.5"], {})
    assert route_face("opaque", 1.0, cfg) == ("slow", False) and cfg.costs.slow == 2.5
    with pytest.raises(ConfigError, match="routes.none"):
        build_config(PredictConfig, None, ["routes.none=warp"], {})
    with pytest.raises(ConfigError, match="fallback_route"):
        PredictConfig(fallback_route="fastest")
    with pytest.raises(ConfigError, match="costs.fast"):
        build_config(PredictConfig, None, ["costs.fast=-1"], {})


def test_a_frame_takes_its_most_expensive_face_route():
    costs = PredictConfig().costs
    assert frame_route([], costs) == "fast"
    assert frame_route(["fast", "slow", "mask_aware"], costs) == "slow"
    assert frame_route(["fast", "mask_aware"], costs) == "mask_aware"


def test_report_arithmetic_of_the_seed_note_example():
    # The seed note's 1,000-frame video: 800 clean, 150 opaque, 50 transparent frames, one face
    # each: 800 * 0.5 + 150 * 0.6 + 50 * 3 = 640 s against 3,000 s always slow (4.69x).
    cfg = PredictConfig()
    faces, frames = [], []
    for cls, route, n in (("none", "fast", 800), ("opaque", "mask_aware", 150), ("transparent", "slow", 50)):
        faces += [{"class": cls, "route": route, "fallback": False}] * n
        frames += [{"route": route, "faces": 1, "weight": 1}] * n
    rep = routing_report(faces, frames, cfg=cfg, classifier_seconds=2.0, detector_seconds=0.0)
    assert rep["faces"]["per_route"]["fast"] == {"count": 800, "percent": 80.0}
    assert rep["frames"]["per_route"]["slow"] == {"count": 50, "percent": 5.0}
    est = rep["estimate"]
    assert est["routed_s"] == pytest.approx(640.0) and est["always_slow_s"] == pytest.approx(3000.0)
    assert est["total_s"] == pytest.approx(642.0) and est["speedup"] == pytest.approx(3000 / 642, abs=1e-3)
    assert rep["timing"]["classifier_ms_per_face"] == pytest.approx(2.0)
    assert rep["timing"]["detector_ms_per_frame"] is None


def test_report_counts_skipped_frames_and_frames_without_a_face():
    cfg = PredictConfig()
    faces = [{"class": "transparent", "route": "slow", "fallback": False},
             {"class": "none", "route": "mask_aware", "fallback": True}]
    # --every 3 on 7 frames: classified frames 0 (2 faces), 3 (none), 6 (stands for itself only)
    frames = [{"route": "slow", "faces": 2, "weight": 3}, {"route": "fast", "faces": 0, "weight": 3},
              {"route": "fast", "faces": 0, "weight": 1}]
    rep = routing_report(faces, frames, cfg=cfg, classifier_seconds=0.01, detector_seconds=0.3)
    assert rep["frames"]["total"] == 7 and rep["frames"]["classified"] == 3 and rep["frames"]["without_face"] == 4
    assert rep["faces"]["fallback"] == 1 and rep["faces"]["per_class"]["none"]["count"] == 1
    assert rep["estimate"]["routed_s"] == pytest.approx(3 * 3.0 + 4 * 0.5)
    assert rep["estimate"]["always_slow_s"] == pytest.approx(21.0)
    assert rep["timing"]["detector_ms_per_frame"] == pytest.approx(100.0)
    assert rep["timing"]["classifier_ms_per_face"] == pytest.approx(5.0)
