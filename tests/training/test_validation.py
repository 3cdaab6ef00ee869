"""Training validation goes through the evaluation engine: on one real protocol it gives the
numbers `eval-gallery` gives on the same images written to disk (the two were separate code
paths before), and the baseline equals eval-gallery's pretrained cosine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from occtool.data.images import list_identity_tree
from tests.conftest import shared_or_skip
from occtool.evaluation import evaluate_gallery, load_eval_model
from occtool.models import FaceModel, build_backbone, default_weights, inference_copy, save_model_checkpoint
from occtool.training.config import ProbeOcclusionConfig
from occtool.training.validation import build_eval_set, evaluate, prepare, set_baseline

METHODS = ("cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ", "fused")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, lfw_six):
    """Pretrained MobileFaceNet + an occlusion head and neck whose BatchNorms are calibrated on
    real faces (so visibilities are not constant), and an untrained QAConv head marked trained."""
    shared_or_skip("occluders", "masktheface")
    from occtool.matching import QAConvMatcher

    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")),
                      neck_channels=32)
    imgs = np.stack([np.asarray(Image.open(r.path).convert("RGB")) for r in list_identity_tree(lfw_six)])
    from occtool.models import preprocess

    for m in list(model.head.modules()) + list(model.neck.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.head.train(), model.neck.train()
    with torch.no_grad():
        fm = model.backbone.eval().features(preprocess(imgs, model.backbone.input_spec))
        model.head(fm), model.neck(fm)
    model.eval()
    matcher = QAConvMatcher(num_features=32, height=7, width=7)
    matcher.mark_trained()
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_model_checkpoint(path, model=model, matcher=matcher, config={"note": "test"})
    return path


def _write(images: np.ndarray, ids, root) -> None:
    for k, (img, ident) in enumerate(zip(images, ids)):
        (root / ident).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / ident / f"{k:03d}.png")  # lossless: the same pixels


@pytest.mark.slow
def test_validation_equals_eval_gallery(lfw_six, checkpoint, tmp_path):
    from occtool.models import load_model_checkpoint

    ck = load_model_checkpoint(checkpoint)
    evalset = build_eval_set("v", list_identity_tree(lfw_six), occlusion_cfg=ProbeOcclusionConfig(), seed=3)
    teacher = inference_copy(ck.model.backbone, "cpu")
    prepare(evalset, teacher, device="cpu", batch_size=16)
    set_baseline(evalset, teacher, device="cpu")
    res = evaluate(evalset, model=ck.model, matcher=ck.matcher, device="cpu")

    g_ids = [f"id{c}" for c in evalset.gallery_ids]
    p_ids = [f"id{c}" for c in evalset.probe_true]
    _write(evalset.gallery_images, g_ids, tmp_path / "gallery")
    for key, images in (("clean", evalset.probe_images), ("masked", evalset.masked_images)):
        _write(images, p_ids, tmp_path / key)
        gallery, probes = list_identity_tree(tmp_path / "gallery"), list_identity_tree(tmp_path / key)
        ev = evaluate_gallery(gallery, probes, em=load_eval_model(checkpoint=checkpoint), methods=list(METHODS))
        base = evaluate_gallery(gallery, probes, em=load_eval_model(backbone="mobilefacenet"), methods=["cosine"])
        for method, m in [*ev["metrics"]["methods"].items(), ("cosine_pretrained", base["metrics"]["methods"]["cosine"])]:
            for metric in ("rank1", "rank5"):  # float16 stored maps vs float32: same ranks
                assert res[f"{key}/{method}/{metric}"] == m[metric], (key, method, metric)
    assert 0.0 <= res["occlusion/iou@0.5"] <= 1.0 and res["occlusion/visibility_clean"] > 0
