"""schedule.occlusion_head_epochs (issue 12): the head trains for the first N epochs, its
BatchNorm statistics are then re-estimated exactly over the cached views, and it stays frozen
(weights and statistics) while the rest trains on; values validated, seeded, resume-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from occtool.cli.app import run
from occtool.config import load_config
from occtool.errors import ConfigError
from occtool.training import TrainConfig, train
from occtool.training.head_schedule import head_lr_lambda, reestimate_batchnorm, sample_cached_views
from tests.training.conftest import SMOKE

pytestmark = pytest.mark.xdist_group("training")


def test_reestimate_batchnorm_matches_the_direct_statistics():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(6, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
    w = conv.weight.detach().clone()
    maps = [torch.randn(b, 6, 5, 5) * 3 + 1 for b in (7, 2, 5)]
    n = reestimate_batchnorm(conv, bn, maps)
    with torch.no_grad():
        y = conv(torch.cat(maps)).transpose(0, 1).reshape(4, -1).double()  # [channels, values]
    var, mean = torch.var_mean(y, dim=1, unbiased=True)
    assert n == 14 * 25
    assert torch.allclose(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)
    assert torch.equal(conv.weight, w)  # the weights are untouched


def test_reestimate_batchnorm_rejects_wrong_shapes():
    conv, bn = nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4)
    with pytest.raises(Exception, match=r"\[b, 6, H, W\]"):
        reestimate_batchnorm(conv, bn, [torch.zeros(2, 5, 3, 3)])


def test_head_lr_lambda_follows_the_run_lambda_then_stops():
    f = head_lr_lambda(lambda step: 1.0 / (step + 1), 5)
    assert [f(s) for s in range(7)] == [1.0, 0.5, 1 / 3, 0.25, 0.2, 0.0, 0.0]


def test_sample_cached_views_is_seeded_and_in_range():
    a = sample_cached_views(50, 7, count=400, seed=3)
    b = sample_cached_views(50, 7, count=400, seed=3)
    c = sample_cached_views(50, 7, count=400, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    img, view = a
    assert img.min() >= 0 and img.max() < 50 and view.min() >= 0 and view.max() < 7
    assert np.all(np.diff(img) >= 0) and len(set(view.tolist())) == 7


@pytest.mark.parametrize("value", [0, 3, -1, 1.5, True])
def test_occlusion_head_epochs_range(value):
    with pytest.raises(ConfigError, match="schedule.occlusion_head_epochs"):
        load_config(TrainConfig, overrides=["schedule.epochs=3", f"schedule.occlusion_head_epochs={value}"])


def test_occlusion_head_options_default_off_and_bn_views_range():
    cfg = load_config(TrainConfig, overrides=[])
    assert cfg.schedule.occlusion_head_epochs is None
    assert load_config(TrainConfig, overrides=["schedule.epochs=3", "schedule.occlusion_head_epochs=2"]
                       ).schedule.occlusion_head_epochs == 2
    with pytest.raises(ConfigError, match="schedule.occlusion_head_bn_views"):
        load_config(TrainConfig, overrides=["schedule.occlusion_head_bn_views=0"])


def test_cli_needs_the_feature_cache(synthetic_tree, tmp_path, capsys):
    code = run(["train", "--config", str(SMOKE), "--data", str(synthetic_tree), "--out", str(tmp_path / "o"),
                "--set", "device=cpu", "--set", "schedule.occlusion_head_epochs=1"])
    err = capsys.readouterr().err
    assert code == 1 and "error: schedule.occlusion_head_epochs needs data.feature_cache" in err
    assert "Traceback" not in err


# -- a tiny run with the feature cache ---------------------------------------------------------------

OVERRIDES = ("device=cpu", "threads=1", "data.feature_cache=true", "model.freeze_backbone=true", "data.runtime=torch",
             "data.cache_views=3", "data.cache_clean_views=1", "schedule.epochs=3", "schedule.steps_per_epoch=2",
             "schedule.occlusion_head_epochs=1", "schedule.occlusion_head_bn_views=64", "validation.enabled=false",
             "checkpoint.every_steps=0", "checkpoint.keep_last=0", "loss.adaface=0", "loss.occlusion_warmup_steps=0")


def _cfg(tree: Path, cache: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, yaml_path=SMOKE,
                       overrides=[f"data.train_root={tree}", f"data.cache_dir={cache}", *OVERRIDES, *extra])


def _module(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"state-{step:08d}.pt", map_location="cpu", weights_only=True)["module"]


def test_head_frozen_after_its_epochs_with_exact_statistics_and_resume(synthetic_tree, tmp_path):
    cache = tmp_path / "cache"
    train(_cfg(synthetic_tree, cache), out_dir=tmp_path / "full")
    s2, s4, s6 = (_module(tmp_path / "full", s) for s in (2, 4, 6))
    head = [k for k in s2 if k.startswith("model.head.")]
    for k in head:
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(s4[k], s6[k]), k  # eval mode from epoch 2 on: the statistics stay
        else:
            assert torch.equal(s2[k], s6[k]), k  # lr 0 after epoch 1: the weights stay
    assert not torch.equal(s2["model.head.bn.running_mean"], s4["model.head.bn.running_mean"])
    neck = [k for k in s2 if k.startswith("model.neck.") and s2[k].is_floating_point()]
    assert neck and any(not torch.equal(s2[k], s6[k]) for k in neck)  # the rest trains on
    # the re-estimated statistics are those of the head's conv over the seeded cached views
    fm = torch.from_numpy(np.load(next(cache.glob("features-*")) / "fm.npy"))
    img, view = sample_cached_views(fm.shape[0], fm.shape[1], count=64, seed=0)
    conv = nn.Conv2d(fm.shape[2], s2["model.head.conv1.weight"].shape[0], 3, padding=1, bias=False)
    conv.weight.data.copy_(s2["model.head.conv1.weight"])
    with torch.no_grad():
        y = conv(fm[torch.from_numpy(img), torch.from_numpy(view)].float()).transpose(0, 1).flatten(1).double()
    var, mean = torch.var_mean(y, dim=1, unbiased=True)
    assert torch.allclose(s4["model.head.bn.running_mean"].double(), mean, rtol=1e-4, atol=1e-6)
    assert torch.allclose(s4["model.head.bn.running_var"].double(), var, rtol=1e-4, atol=1e-6)
    # interrupted inside the first frozen epoch, then resumed: the same final state
    train(_cfg(synthetic_tree, cache, "debug.stop_after_steps=3"), out_dir=tmp_path / "part")
    train(_cfg(synthetic_tree, cache), out_dir=tmp_path / "part", resume=True)
    r6 = _module(tmp_path / "part", 6)
    for k in s6:
        assert torch.equal(s6[k], r6[k]), k
