"""benchmarks/sweep_visibility_exponent.py on a tiny run: every probe set at every exponent, and
exponent 1 is the training validation's own cosine_occ_matched figure."""

import pytest
import torch

from occtool.io import write_config
from occtool.models import FaceModel, build_backbone, save_model_checkpoint
from tests.conftest import load_benchmark
from tests.training.test_train import smoke_cfg


def test_sweep_scores_every_probe_set_at_every_exponent(synthetic_tree, tmp_path):
    from occtool.training.data import build_train_data
    from occtool.training.validation import build_eval_set, evaluate, prepare

    cfg = smoke_cfg(synthetic_tree, "test.families=[sunglasses,hand]", "validation.holdout_identities=3")
    run = tmp_path / "run"
    run.mkdir()
    write_config(run, cfg)
    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet"), hidden_channels=32, neck_channels=32).eval()
    save_model_checkpoint(run / "model.pt", model=model, matcher=None, config={})
    mod = load_benchmark("sweep_visibility_exponent")
    res = mod.sweep_run(run, "model.pt", [1.0, 0.5], families=True)
    assert set(res) == {1.0, 0.5}
    for per_set in res.values():
        assert set(per_set) == {"clean", "masked", "occ_sunglasses", "occ_hand"}
        assert all(0.0 <= v <= 100.0 for v in per_set.values())
    occ, masked, clean = mod.summary(res[1.0])
    assert occ == pytest.approx((res[1.0]["masked"] + res[1.0]["occ_sunglasses"] + res[1.0]["occ_hand"]) / 3)
    assert (masked, clean) == (res[1.0]["masked"], res[1.0]["clean"])
    # exponent 1 = the training validation's figure for the same people and probes
    vc = cfg.validation
    ev = build_eval_set("validation", build_train_data(cfg).validation, occlusion_cfg=vc.probe_occlusion, seed=vc.seed)
    prepare(ev, model.backbone, device="cpu", batch_size=8)
    plain = evaluate(ev, model=model, device="cpu", visibility_exponent=1.0)
    assert res[1.0]["masked"] == pytest.approx(100 * plain["masked/cosine_occ_matched/rank1"], abs=0.01)
