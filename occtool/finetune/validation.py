"""Validation of a fine-tune on held-out people, the way the model is used: a gallery of clean
images (each person's first image) against probes (their other images), clean and degraded in
each configured way (seeded, fixed for the run; restored when a restoration model is given).
Scored through `occtool.evaluation.identify_features` (the same engine as `eval-gallery`,
cosine, flip TTA): rank-1 and TAR@FAR per probe kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from occtool.data.images import ImageRecord
from occtool.errors import DataError
from occtool.evaluation import Features, Scoring, features_from_maps, identify_features
from occtool.evaluation.metrics import far_key
from occtool.models import inference_copy, preprocess
from occtool.training.data import ImageLoader, view_rng

VAL_FAR = 1e-3
_PROBE_KEY = 0x7A1


@dataclass
class ValidationSet:
    gallery: np.ndarray  # uint8 [G, H, W, 3] clean, one per person
    gallery_ids: list[str]
    probes: dict[str, np.ndarray]  # kind ("clean", "occlusion", ...) -> uint8 [P, H, W, 3]
    probe_ids: list[str]
    info: dict = field(default_factory=dict)


def build_validation_set(records: list[ImageRecord], *, loader: ImageLoader, degrader, restorer, kinds, seed: int,
                         probes_per_identity: int) -> ValidationSet:
    """`records` are the held-out people's images (`loader` decodes them by position)."""
    by_id: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_id.setdefault(r.identity, []).append(i)
    g_idx, p_idx = [], []
    for ident in sorted(by_id):
        idx = sorted(by_id[ident], key=lambda i: records[i].relpath)
        if len(idx) < 2:
            continue
        g_idx.append(idx[0])
        p_idx.extend(idx[1:1 + probes_per_identity])
    if not p_idx:
        raise DataError("validation: no held-out person has 2 images (a gallery image and a probe)")
    clean = np.stack([loader.image(i) for i in p_idx])
    probes = {"clean": clean}
    for k, kind in enumerate(kinds):
        deg = degrader.kind(kind)
        imgs = np.stack([deg(img, rng=view_rng(seed, _PROBE_KEY, k, j)) for j, img in enumerate(clean)])
        probes[kind] = restorer(imgs) if restorer is not None else imgs
    info = {"identities": len(g_idx), "gallery_images": len(g_idx), "probes_per_kind": len(p_idx),
            "probe_kinds": ["clean", *kinds], "restored": restorer is not None}
    return ValidationSet(gallery=np.stack([loader.image(i) for i in g_idx]),
                         gallery_ids=[records[i].identity for i in g_idx], probes=probes,
                         probe_ids=[records[i].identity for i in p_idx], info=info)


@torch.inference_mode()
def embed_images(backbone, images: np.ndarray, *, device: torch.device, batch_size: int):
    """uint8 [N, H, W, 3] -> evaluation `Features` (flip TTA) via `features_from_maps`."""
    fast = inference_copy(backbone, device)
    chunks = []
    for s in range(0, len(images), batch_size):
        x = preprocess(images[s:s + batch_size], fast.input_spec, device=device)
        maps = [fast.features(x), fast.features(torch.flip(x, dims=[3]))]
        chunks.append(features_from_maps(fast, maps, device=device, with_maps=False).embeddings)
    emb = torch.cat(chunks)
    n = len(emb)
    return Features(embeddings=emb, match_maps=None, occlusion=None, ok_mask=np.ones(n, dtype=bool), paths=[],
                    hashes=[None] * n)


def evaluate(vset: ValidationSet, backbone, *, device: torch.device, batch_size: int) -> dict[str, float]:
    """Flat metrics: `<kind>/rank1`, `<kind>/tar@far=1e-3` per probe kind, and `degraded/rank1`
    (the mean over the degraded kinds)."""
    gallery = embed_images(backbone, vset.gallery, device=device, batch_size=batch_size)
    out: dict[str, float] = {}
    for kind, images in vset.probes.items():
        probes = embed_images(backbone, images, device=device, batch_size=batch_size)
        res = identify_features(probes, gallery, probe_ids=vset.probe_ids, gallery_ids=vset.gallery_ids,
                                scoring=Scoring(views=2), methods=["cosine"], device=str(device), fars=(VAL_FAR,))
        block = res["cosine"]
        out[f"{kind}/rank1"] = float(block["rank1"])
        out[f"{kind}/{far_key(VAL_FAR)}"] = float(block[far_key(VAL_FAR)])
    degraded = [out[f"{k}/rank1"] for k in vset.probes if k != "clean"]
    out["degraded/rank1"] = float(np.mean(degraded)) if degraded else out["clean/rank1"]
    return out
