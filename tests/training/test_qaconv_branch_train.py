"""Training with the QAConv branch (model.qaconv_branch, issue 15): the feature cache stores the
last stage's input under its own key, a short fixed-seed run lowers the QAConv loss and moves only
the branch (the frozen backbone stays the pretrained one), validation scores QAConv through the
branch, the checkpoint rebuilds it; other backbones are a one-line error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from occtool.cli.app import run
from occtool.training import train
from tests.training.conftest import SMOKE
from tests.training.test_train import smoke_cfg, step_rows

pytestmark = pytest.mark.xdist_group("training")


def test_branch_run_lowers_the_qaconv_loss_and_trains_only_the_branch(lfw_six, tmp_path):
    cache = tmp_path / "cache"
    cfg = smoke_cfg(
        lfw_six, "model.weights=default", "model.hidden_channels=16", "model.neck_channels=32",
        "model.qaconv_branch=true", "optim.qaconv_branch_lr_scale=0.3",
        "data.p=3", "data.k=2", "data.feature_cache=true", "data.cache_views=2", f"data.cache_dir={cache}",
        "model.freeze_backbone=true", "loss.adaface=0", "loss.occlusion=0.1", "optim.lr=0.003",
        "schedule.epochs=1", "schedule.steps_per_epoch=30", "schedule.scheduler=constant",
        "validation.holdout_identities=2", "validation.panels=0", "validation.matched=false",
        "checkpoint.every_steps=0", "threads=1",
    )
    res = train(cfg, out_dir=tmp_path / "run")
    rows = step_rows(res.history)
    first = np.mean([r["loss_qaconv"] for r in rows[:5]])
    last = np.mean([r["loss_qaconv"] for r in rows[-5:]])
    assert last < 0.9 * first, (first, last)
    [stored] = [p for p in cache.iterdir() if p.name.startswith("features-")]
    stage = np.load(stored / "stage.npy")
    assert stage.shape[1:] == (2, 128, 7, 7)  # [N, V, C_s, H, W]
    assert "masked/qaconv_occ/rank1" in res.history[-1]  # validation scored QAConv through the branch

    from occtool.models import build_backbone, default_weights, load_model_checkpoint

    model = load_model_checkpoint(tmp_path / "run" / "model.pt").model
    pretrained = build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval()
    assert model.qaconv_branch
    ref = pretrained.last_stage().state_dict()
    moved = [k for k, v in model.branch.state_dict().items() if not torch.equal(v, ref[k])]
    assert moved and all(not k.endswith(("running_mean", "running_var")) for k in moved)  # BN statistics stay
    body = {k: v for k, v in pretrained.state_dict().items() if not k.startswith(("net.gdconv", "net.conv3", "net.bn"))}
    now = model.backbone.state_dict()
    assert all(torch.equal(now[k], v) for k, v in body.items())  # the frozen body did not move


def test_the_cache_key_changes_only_with_the_branch(lfw_six):
    from occtool.data.images import list_identity_tree
    from occtool.training.data import _cache_key

    records = list_identity_tree(lfw_six)
    plain = smoke_cfg(lfw_six, "data.feature_cache=true")
    branch = smoke_cfg(lfw_six, "data.feature_cache=true", "model.qaconv_branch=true")
    other = smoke_cfg(lfw_six, "data.feature_cache=true", "model.qaconv_branch=false")
    assert _cache_key(records, plain, "w") == _cache_key(records, other, "w") != _cache_key(records, branch, "w")


def test_cli_branch_on_another_backbone_is_one_error_line(synthetic_tree, tmp_path, capsys):
    rc = run(["train", "--config", str(SMOKE), "--out", str(tmp_path / "a"), "--data", str(synthetic_tree),
              "--set", "model.backbone=ir18", "--set", "model.weights=none", "--set", "model.qaconv_branch=true",
              "--set", "device=cpu"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1 and "ir18 has no split body" in errors[0] and "Traceback" not in err


def test_the_local_neck_refuses_a_kernel_or_hidden_layer_it_would_ignore(synthetic_tree):
    from occtool.errors import ConfigError

    for extra in ("model.neck_kernel=3", "model.neck_hidden=64"):
        with pytest.raises(ConfigError, match="neck_kernel / neck_hidden"):
            smoke_cfg(synthetic_tree, "model.neck_local=true", extra)
