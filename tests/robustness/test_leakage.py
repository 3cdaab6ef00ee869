"""A losslessly re-encoded copy of a gallery image among the probes is leakage (pixel hash),
not only a byte-identical one."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from occtool.data.images import list_identity_tree
from occtool.evaluation import evaluate_gallery, load_eval_model
from occtool.data.images import file_sha1
from occtool.evaluation.leakage import LeakageError, check_pixel_leakage
from tests.robustness.conftest import write_tree


def _reencode(src, dst):
    Image.open(src).save(dst, compress_level=9)  # same pixels, other bytes


def test_reencoded_copy_is_refused(tmp_path):
    gal = write_tree(tmp_path / "g", {"Ann_A": 1, "Bob_B": 1})
    prb = write_tree(tmp_path / "p", {"Ann_A": 1}, seed=3)
    copy = prb / "Ann_A" / "copy.png"
    _reencode(gal / "Bob_B" / "Bob_B_0001.png", copy)
    assert file_sha1(gal / "Bob_B" / "Bob_B_0001.png") != file_sha1(copy)
    g, p = sorted(gal.rglob("*.png")), sorted(prb.rglob("*.png"))
    with pytest.raises(LeakageError, match="same pixels.*copy.png"):
        check_pixel_leakage(g, p)
    check_pixel_leakage(g, [p[0]])  # different pixels: fine


def test_evaluate_gallery_refuses_a_reencoded_probe(tmp_path):
    from occtool.models import build_backbone

    torch.manual_seed(0)
    weights = tmp_path / "mfn.pt"
    torch.save(build_backbone("mobilefacenet").state_dict(), weights)
    gal = write_tree(tmp_path / "g", {"Ann_A": 1, "Bob_B": 1})
    prb = write_tree(tmp_path / "p", {"Ann_A": 1}, seed=3)
    _reencode(gal / "Ann_A" / "Ann_A_0001.png", prb / "Ann_A" / "again.png")
    em = load_eval_model(backbone="mobilefacenet", weights=weights)
    with pytest.raises(LeakageError, match="same pixels"):
        evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), em=em, methods=["cosine"])
