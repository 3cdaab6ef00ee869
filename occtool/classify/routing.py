"""Routing: a face's class (and confidence) -> its processing path; the routing report.

A face goes to `routes[class]` (none -> fast, opaque -> mask_aware, transparent -> slow by
default) unless its confidence is below `min_confidence`: then to `fallback_route`. A frame is
processed once, by the most expensive path any of its faces needs (a frame without a face takes
the fast path). The report estimates the total time of the frames for the per-path costs
(seconds per frame) against always taking the slow path, with the measured classifier time
added to the routed side.
"""

from __future__ import annotations

from collections.abc import Sequence

from occtool.classify.config import ROUTES, PathCosts, PredictConfig


def route_face(cls: str, confidence: float, cfg: PredictConfig) -> tuple[str, bool]:
    """(route, fell_back): the class's route, or the fallback route below min_confidence."""
    if confidence < cfg.min_confidence:
        return cfg.fallback_route, True
    return cfg.routes.as_dict()[cls], False


def frame_route(face_routes: Sequence[str], costs: PathCosts) -> str:
    """The most expensive route among a frame's faces (ties: the later in ROUTES); fast if none."""
    if not face_routes:
        return "fast"
    return max(face_routes, key=lambda r: (getattr(costs, r), ROUTES.index(r)))


def _share(counts: dict[str, int | float], total: float) -> dict[str, dict]:
    return {k: {"count": v, "percent": round(100.0 * v / total, 2) if total else 0.0} for k, v in counts.items()}


def routing_report(
    faces: Sequence[dict],
    frames: Sequence[dict],
    *,
    cfg: PredictConfig,
    classifier_seconds: float,
    detector_seconds: float,
) -> dict:
    """faces: dicts with "class", "route", "fallback"; frames: dicts with "route" (see
    `frame_route`), "faces" (count) and "weight" (frames it stands for: 1, or N with --every N).

    Returns faces / frames per route (count, %), classifier ms per face, detector ms per
    classified frame, and the time estimate {routed_s, classifier_s, total_s, always_slow_s, speedup}.
    """
    n_faces = len(faces)
    face_routes = {r: sum(1 for f in faces if f["route"] == r) for r in ROUTES}
    face_classes = {c: sum(1 for f in faces if f["class"] == c) for c in cfg.routes.as_dict()}
    n_frames = sum(int(f["weight"]) for f in frames)
    frame_routes = {r: sum(int(f["weight"]) for f in frames if f["route"] == r) for r in ROUTES}
    costs = cfg.costs
    routed_s = sum(frame_routes[r] * getattr(costs, r) for r in ROUTES)
    total_s = routed_s + classifier_seconds
    always_slow_s = n_frames * costs.slow
    return {
        "faces": {"total": n_faces, "per_route": _share(face_routes, n_faces), "per_class": _share(face_classes, n_faces),
                  "fallback": sum(1 for f in faces if f["fallback"])},
        "frames": {"total": n_frames, "classified": len(frames), "without_face": sum(int(f["weight"]) for f in frames if not f["faces"]),
                   "per_route": _share(frame_routes, n_frames)},
        "timing": {
            "classifier_ms_per_face": round(1000.0 * classifier_seconds / n_faces, 3) if n_faces else None,
            "detector_ms_per_frame": round(1000.0 * detector_seconds / len(frames), 3) if frames and detector_seconds else None,
            "classifier_s": round(classifier_seconds, 4),
            "detector_s": round(detector_seconds, 4),
        },
        "estimate": {
            "costs_s_per_frame": {r: getattr(costs, r) for r in ROUTES},
            "routed_s": round(routed_s, 4),
            "classifier_s": round(classifier_seconds, 4),
            "total_s": round(total_s, 4),
            "always_slow_s": round(always_slow_s, 4),
            "speedup": round(always_slow_s / total_s, 3) if total_s > 0 else None,
        },
    }
