"""Two CPU processes (gloo, DDP) compute what one process computes on the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.xdist_group("training")

# A frozen (random) body keeps the comparison meaningful: training a random deep net from scratch
# is chaotic (1 vs 2 CPU threads already diverge after two steps); the trained parts here are
# the output layer, occlusion head, neck, QAConv and AdaFace heads, with every loss on, every
# BatchNorm of them synchronised, pairs gathered across processes.
OVERRIDES = (
    "schedule.epochs=1", "schedule.steps_per_epoch=3", "validation.enabled=false", "checkpoint.every_steps=1",
    "checkpoint.keep_last=5", "threads=1", "optim.optimizer=sgd", "optim.lr=0.01", "loss.occlusion_warmup_steps=0",
    "loss.contrastive=0.5", "loss.distill=0.5", "model.freeze_backbone=true", "model.train_output_layer=true",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))


def _train_worker(rank: int, world: int, port: int, tree: str, out: str) -> None:
    _env(rank, world, port)
    from occtool.config import load_config
    from occtool.training import TrainConfig, train
    from tests.training.conftest import SMOKE

    cfg = load_config(TrainConfig, yaml_path=SMOKE, overrides=[f"data.train_root={tree}", "device=cpu", *OVERRIDES])
    train(cfg, out_dir=out)


def _state(out: Path, step: int) -> dict:
    return torch.load(out / "checkpoints" / f"state-{step:08d}.pt", map_location="cpu", weights_only=True)


def test_two_process_gloo_matches_one_process(synthetic_tree, tmp_path, monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    from occtool.config import load_config
    from occtool.training import TrainConfig, train
    from tests.training.conftest import SMOKE

    one = tmp_path / "one"
    cfg = load_config(TrainConfig, yaml_path=SMOKE, overrides=[f"data.train_root={synthetic_tree}", "device=cpu", *OVERRIDES])
    train(cfg, out_dir=one)
    two = tmp_path / "two"
    mp.spawn(_train_worker, args=(2, _free_port(), str(synthetic_tree), str(two)), nprocs=2, join=True)

    a1, a3, b1, b3 = _state(one, 1), _state(one, 3), _state(two, 1), _state(two, 3)
    assert a3["step"] == b3["step"] == 3
    # the logged losses are the global batch's
    la = [r["loss"] for r in a3["history"] if r["kind"] == "step"]
    lb = [r["loss"] for r in b3["history"] if r["kind"] == "step"]
    assert la == pytest.approx(lb, rel=1e-4)
    # every trained tensor moved the same way between steps 1 and 3 (relative to how far it moved)
    moved = 0
    for k, v in a1["module"].items():
        if not v.is_floating_point():
            continue
        da = a3["module"][k].double() - v.double()
        db = b3["module"][k].double() - b1["module"][k].double()
        assert float((b1["module"][k].double() - v.double()).abs().max()) < 1e-4 * max(1.0, float(v.abs().max())), k
        if float(da.norm()) > 1e-8:
            moved += 1
            # relative to the movement, with a float32 floor: a running mean of logits whose mean is
            # ~0 moves by ~1e-6, where the order of the global sums alone changes it by ~1e-8
            floor = 1e-7 * max(1.0, float(v.abs().max()))
            assert float((da - db).norm()) < 2e-3 * float(da.norm()) + floor, k
    assert moved >= 10


def _bn_worker(rank: int, port: int) -> None:
    _env(rank, 2, port)
    import torch.distributed as dist

    from occtool.training.distributed import DistInfo, GlobalBatchNorm, gather_with_grad

    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        x = torch.randn(8, 3, 5, 5, dtype=torch.float32) * 3 + 50  # |mean| >> std: no cancellation allowed
        up = torch.arange(600, dtype=torch.float32).reshape(8, 3, 5, 5).sin()
        sl = slice(4 * rank, 4 * rank + 4)
        bn = GlobalBatchNorm(3)
        ref = torch.nn.BatchNorm2d(3)
        with torch.no_grad():
            for m in (bn, ref):
                m.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
                m.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
        xl = x[sl].clone().requires_grad_(True)
        # a loss mixing the local output with the gathered global batch
        info = DistInfo(rank=rank, world_size=2)
        y = bn(xl)
        yall = gather_with_grad(y, info)
        ((y * up[sl]).sum() + 0.5 * (yall * up).sum() / 2).backward()
        xf = x.clone().requires_grad_(True)
        yf = ref(xf)
        ((yf * up).sum() + 0.5 * (yf * up).sum()).backward()
        for g in (bn.weight.grad, bn.bias.grad):
            dist.all_reduce(g)
        torch.testing.assert_close(y, yf[sl], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(xl.grad, xf.grad[sl], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(bn.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(bn.running_mean, ref.running_mean)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_and_gather_match_one_process():
    mp.spawn(_bn_worker, args=(_free_port(),), nprocs=2, join=True)
