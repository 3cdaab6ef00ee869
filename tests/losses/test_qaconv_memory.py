"""The QAConv class-memory loss against a slow reference: hard-negative selection by a
brute-force descriptor loop, the loss as the mean BCE of explicitly listed (sample, memory)
pairs scored one by one, a gradient check, the memory update, and the empty-memory case."""

from __future__ import annotations

import math

import pytest
import torch

from occtool.losses import QAConvClassMemory
from occtool.matching import QAConvMatcher

C, H, W = 6, 3, 3


def _descriptor(m: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
    """[C, H, W] -> unit [C]: sum over locations of (normalised location vector * visibility)."""
    acc = torch.zeros(m.shape[0], dtype=torch.float64)
    for i in range(m.shape[1]):
        for j in range(m.shape[2]):
            f = m[:, i, j].double()
            f = f / max(float(f.norm()), 1e-12)
            acc += f * (1.0 if v is None else float(v[0, i, j]))
    return acc / acc.norm()


def _filled_memory(n=8, negatives=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    mem = QAConvClassMemory(num_classes=n, channels=C, height=H, width=W, negatives=negatives)
    labels = torch.arange(n - 1)  # the last identity is never seen
    mem.update(torch.randn(n - 1, C, H, W, generator=g), torch.rand(n - 1, 1, H, W, generator=g), labels)
    return mem, g


def test_select_is_own_plus_hardest_filled_others():
    mem, g = _filled_memory()
    maps, labels = torch.randn(4, C, H, W, generator=g), torch.tensor([0, 0, 2, 7])
    got = mem.select(maps, None, labels).tolist()
    sims = {j: max(float(_descriptor(maps[b], None) @ _descriptor(mem.maps[j], mem.vis[j])) for b in range(4))
            for j in range(7) if j not in (0, 2)}  # filled, not own (7 is own but empty)
    hardest = sorted(sims, key=sims.get, reverse=True)[:3]
    assert got == sorted([0, 2] + hardest)


def test_loss_equals_bce_over_listed_pairs_and_gradcheck():
    mem, g = _filled_memory()
    mem.double()
    matcher = QAConvMatcher(num_features=C, height=H, width=W).double().eval()  # running stats: pairs independent
    with torch.no_grad():
        matcher.fc.weight.uniform_(-0.1, 0.3)
        matcher.logit_bn.running_var.fill_(2.0)
    maps = torch.randn(4, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    vis = torch.rand(4, 1, H, W, generator=g, dtype=torch.float64)
    labels = torch.tensor([1, 1, 3, 5])
    rows = mem.select(maps.detach(), vis, labels).tolist()
    pos, neg = [], []
    for b in range(4):
        for r in rows:
            logit = matcher.pair_logits(maps[b:b + 1], mem.maps[r:r + 1], vis[b:b + 1], mem.vis[r:r + 1])[0, 0]
            y = 1.0 if int(labels[b]) == r else 0.0
            bce = -(y * torch.log(torch.sigmoid(logit)) + (1 - y) * torch.log(1 - torch.sigmoid(logit)))
            (pos if y else neg).append(bce)
    ref = 0.5 * (torch.stack(pos).mean() + torch.stack(neg).mean())
    got = mem.loss(matcher, maps, vis, labels, balanced=True)
    assert math.isclose(float(got.detach()), float(ref.detach()), rel_tol=1e-9)
    assert torch.autograd.gradcheck(lambda x: mem.loss(matcher, x, vis, labels), (maps,))


def test_update_keeps_the_most_visible_sample_and_empty_memory_gives_zero_with_grad():
    mem = QAConvClassMemory(num_classes=3, channels=C, height=H, width=W, negatives=2)
    matcher = QAConvMatcher(num_features=C, height=H, width=W).train()
    maps = torch.randn(4, C, H, W, requires_grad=True)
    vis = torch.stack([torch.full((1, H, W), v) for v in (0.2, 0.9, 0.5, 0.4)])
    labels = torch.tensor([1, 1, 2, 2])
    loss = mem.loss(matcher, maps, vis, labels)
    assert float(loss) == 0.0 and loss.requires_grad
    mem.update(maps.detach(), vis, labels)
    assert torch.equal(mem.maps[1], maps[1].detach()) and torch.equal(mem.maps[2], maps[2].detach())
    assert mem.filled.tolist() == [False, True, True] and torch.equal(mem.vis[2], vis[2])
    loss = mem.loss(matcher, maps, vis, torch.tensor([1, 1, 0, 0]))  # positives for 1, negative 2
    loss.backward()
    assert float(loss) > 0 and maps.grad.abs().sum() > 0


def test_bad_sizes():
    with pytest.raises(ValueError):
        QAConvClassMemory(num_classes=1, channels=C, height=H, width=W, negatives=1)
    with pytest.raises(ValueError):
        QAConvClassMemory(num_classes=4, channels=C, height=H, width=W, negatives=0)
