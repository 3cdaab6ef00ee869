"""Defect 3: a well-formed feature-cache entry of the wrong shape is a cache miss (recomputed)."""

from __future__ import annotations

import numpy as np
import torch

from occtool.data.images import list_identity_tree
from occtool.evaluation import load_eval_model
from occtool.evaluation.extract import extract_features
from tests.robustness.conftest import write_tree


def test_wrong_shape_entry_is_a_miss(tmp_path):
    from occtool.models import build_backbone

    torch.manual_seed(0)
    weights = tmp_path / "mfn.pt"
    torch.save(build_backbone("mobilefacenet").state_dict(), weights)
    recs = list_identity_tree(write_tree(tmp_path / "t", {"Ann_A": 1, "Bob_B": 1}))
    em = load_eval_model(backbone="mobilefacenet", weights=weights)
    key, cache = em.cache_key(True), tmp_path / "cache"
    a = extract_features(recs, model=em.model, device="cpu", cache_dir=cache, model_key=key)
    entries = sorted(cache.rglob("*.npz"))
    assert len(entries) == 2
    # the first entry: the right names, plain arrays, the wrong shapes
    np.savez(entries[0], embedding=np.zeros(7, np.float32), match_map=np.zeros((3, 2, 2), np.float32),
             resized=np.array(False))
    b = extract_features(recs, model=em.model, device="cpu", cache_dir=cache, model_key=key)
    assert b.cache_hits == 1 and b.n_bad == 0
    assert torch.allclose(a.embeddings, b.embeddings) and torch.allclose(a.match_maps, b.match_maps)
