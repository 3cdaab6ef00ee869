"""Losses against slow reference loops, gradchecks, and the masked-reduction edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occtool.errors import ShapeError
from occtool.losses import (
    AdaFaceLoss,
    combine_losses,
    masked_mean,
    occlusion_loss,
    qaconv_pair_loss,
    supervised_contrastive_loss,
)


# ---------------------------------------------------------------- masked reduction
def test_masked_mean_ignores_invalid_samples_even_nan():
    values = torch.tensor([[1.0, 3.0], [float("nan"), float("inf")], [5.0, 7.0]], requires_grad=True)
    valid = torch.tensor([True, False, True])
    out = masked_mean(values, valid)
    assert out.item() == pytest.approx(4.0)
    out.backward()
    assert torch.isfinite(values.grad).all()
    assert values.grad[1].abs().sum() == 0
    assert values.grad[0, 0].item() == pytest.approx(0.25)


def test_masked_mean_no_valid_is_zero_with_grad_not_nan():
    values = torch.tensor([float("nan"), 2.0, 3.0], requires_grad=True)
    out = masked_mean(values, torch.zeros(3, dtype=torch.bool))
    assert out.item() == 0.0 and not math.isnan(out.item())
    assert out.grad_fn is not None
    out.backward()
    assert torch.equal(values.grad, torch.zeros(3))


def test_masked_mean_float_weights_and_shape_error():
    v = torch.tensor([1.0, 2.0, 4.0])
    assert masked_mean(v, torch.tensor([1.0, 0.5, 0.0])).item() == pytest.approx((1 + 1) / 1.5)
    with pytest.raises(ShapeError):
        masked_mean(v, torch.ones(2))


def test_masked_mean_gradcheck():
    v = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 0.0, 0.3, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: masked_mean(x, w), (v,))


# ---------------------------------------------------------------- occlusion loss
def _occ_reference(pred, target_full, has_mask):
    """Loop: cell (i, j) of a 7x7 map covers a 16x16 block; mean over samples with masks."""
    total, n = 0.0, 0
    b, _, h, w = pred.shape
    fy, fx = target_full.shape[-2] // h, target_full.shape[-1] // w
    for k in range(b):
        if not has_mask[k]:
            continue
        for i in range(h):
            for j in range(w):
                t = float(target_full[k, i * fy:(i + 1) * fy, j * fx:(j + 1) * fx].mean())
                total += (float(pred[k, 0, i, j]) - t) ** 2
                n += 1
    return total / n if n else 0.0


def test_occlusion_loss_matches_reference_loop():
    g = torch.Generator().manual_seed(1)
    pred = torch.rand(5, 1, 7, 7, generator=g)
    target = (torch.rand(5, 112, 112, generator=g) > 0.4).float()
    has = torch.tensor([True, False, True, True, False])
    target[1] = float("nan")  # a sample without ground truth may hold anything
    got = occlusion_loss(pred, target, has)
    assert got.item() == pytest.approx(_occ_reference(pred, target, has), rel=1e-5)


def test_occlusion_loss_target_at_map_resolution_and_none_valid():
    pred = torch.rand(3, 1, 7, 7, requires_grad=True)
    tgt = torch.rand(3, 1, 7, 7)
    assert occlusion_loss(pred, tgt).item() == pytest.approx(F.mse_loss(pred, tgt).item(), rel=1e-6)
    zero = occlusion_loss(pred, tgt, torch.zeros(3, dtype=torch.bool))
    assert zero.item() == 0.0 and zero.grad_fn is not None
    zero.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_occlusion_loss_element_valid_and_gradcheck():
    pred = torch.rand(2, 1, 7, 7, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 14, 14, dtype=torch.float64)
    ev = torch.ones(2, 1, 14, 14, dtype=torch.float64)
    ev[:, :, :2, :2] = 0  # top-left cell has no ground truth at all
    ev[:, :, 2, 2] = 0  # one pixel of cell (1, 1) unknown
    loss = occlusion_loss(pred, target, element_valid=ev)
    # reference: cell weights = known fraction, target = mean of the known pixels
    num = den = 0.0
    for k in range(2):
        for i in range(7):
            for j in range(7):
                blk_t = target[k, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                blk_v = ev[k, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                frac = float(blk_v.mean())
                if frac == 0:
                    continue
                t = float((blk_t * blk_v).sum() / blk_v.sum())
                num += frac * (float(pred.detach()[k, 0, i, j]) - t) ** 2
                den += frac
    assert loss.item() == pytest.approx(num / den, rel=1e-9)
    assert torch.autograd.gradcheck(lambda p: occlusion_loss(p, target, element_valid=ev), (pred,))


def test_occlusion_loss_shape_errors():
    with pytest.raises(ShapeError):
        occlusion_loss(torch.rand(2, 7, 7), torch.rand(2, 7, 7))
    with pytest.raises(ShapeError):
        occlusion_loss(torch.rand(2, 1, 7, 7), torch.rand(3, 7, 7))


# ---------------------------------------------------------------- QAConv pair loss
def _pair_reference(logits, labels, balanced):
    pos, neg = [], []
    n = logits.shape[0]
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            x = float(logits[i, j])
            y = 1.0 if labels[i] == labels[j] else 0.0
            bce = max(x, 0) - x * y + math.log1p(math.exp(-abs(x)))
            (pos if y else neg).append(bce)
    if balanced:
        return 0.5 * (sum(pos) / len(pos) + sum(neg) / len(neg))
    return (sum(pos) + sum(neg)) / (len(pos) + len(neg))


@pytest.mark.parametrize("balanced", [False, True])
def test_pair_loss_matches_reference_loop(balanced):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 8, generator=g) * 3
    logits.fill_diagonal_(1e4)  # the diagonal must be ignored entirely
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    got = qaconv_pair_loss(logits, labels, balanced=balanced)
    assert got.item() == pytest.approx(_pair_reference(logits, labels, balanced), rel=1e-5)


def test_pair_loss_with_ids_equals_split_rows():
    """Rows of a global batch split in two halves, ids marking self-pairs, reproduce the whole."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ids = torch.arange(6)
    whole = qaconv_pair_loss(logits, labels)
    halves = [
        qaconv_pair_loss(logits[s], labels[s], labels, probe_ids=ids[s], gallery_ids=ids)
        for s in (slice(0, 3), slice(3, 6))
    ]
    # each half is normalised by its own count (15 valid pairs each of 30): the mean is the whole
    assert (sum(halves) / 2).item() == pytest.approx(whole.item(), rel=1e-6)


def test_pair_loss_gradcheck_and_no_positive():
    logits = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda x: qaconv_pair_loss(x, labels, balanced=True), (logits,))
    # no positive pair at all: the balanced loss is the negatives' half, finite
    out = qaconv_pair_loss(logits, torch.arange(5), balanced=True)
    assert torch.isfinite(out)


# ---------------------------------------------------------------- AdaFace
def _adaface_reference(emb, norms, labels, kernel, m, h, s, mean, std, eps=1e-3):
    """Per-sample, per-class loop of the AdaFace logits (paper eq. / official head), then CE."""
    b, n = emb.shape[0], kernel.shape[1]
    kn = kernel / kernel.norm(dim=0, keepdim=True)
    total = 0.0
    for i in range(b):
        nrm = min(max(float(norms[i]), 0.001), 100.0)
        scaler = max(-1.0, min(1.0, h * (nrm - mean) / (std + eps)))
        row = []
        for j in range(n):
            c = float(emb[i] @ kn[:, j])
            c = max(-1 + eps, min(1 - eps, c))
            if j == int(labels[i]):
                theta = math.acos(c) - m * scaler
                theta = max(eps, min(math.pi - eps, theta))
                c = math.cos(theta) - (m + m * scaler)
            row.append(s * c)
        mx = max(row)
        lse = mx + math.log(sum(math.exp(r - mx) for r in row))
        total += lse - row[int(labels[i])]
    return total / b


def test_adaface_matches_reference_loop_and_updates_stats():
    torch.manual_seed(4)
    loss_fn = AdaFaceLoss(16, 5, t_alpha=0.5)
    emb = F.normalize(torch.randn(6, 16), dim=1)
    norms = torch.tensor([5.0, 12.0, 20.0, 30.0, 0.0001, 150.0]).reshape(6, 1)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    safe = norms.clamp(0.001, 100)
    mean = 0.5 * safe.mean().item() + 0.5 * 20.0
    std = 0.5 * safe.std().item() + 0.5 * 100.0
    ref = _adaface_reference(emb, norms, labels, loss_fn.kernel.detach(), 0.4, 0.333, 64.0, mean, std)
    got = loss_fn(emb, norms, labels)
    assert got.item() == pytest.approx(ref, rel=1e-4)
    assert loss_fn.batch_mean.item() == pytest.approx(mean, rel=1e-6)
    assert loss_fn.batch_std.item() == pytest.approx(std, rel=1e-6)
    # eval mode: statistics frozen
    loss_fn.eval()
    loss_fn(emb, norms, labels)
    assert loss_fn.batch_mean.item() == pytest.approx(mean, rel=1e-6)


def test_adaface_norm_stats_are_exact_when_norms_vary_little():
    """N(60, 0.01^2) norms: a one-pass float32 variance was 136% off; compare with numpy float64."""
    x = np.random.default_rng(0).normal(60.0, 0.01, size=512)
    loss_fn = AdaFaceLoss(4, 2)
    mean, std = loss_fn._batch_stats(torch.from_numpy(x).float().reshape(-1, 1))
    x32 = x.astype(np.float32).astype(np.float64)  # what the float32 norms hold
    assert mean.dtype == torch.float32
    assert mean.item() == pytest.approx(x32.mean(), rel=1e-7)
    assert std.item() == pytest.approx(x32.std(ddof=1), rel=1e-4)
    assert loss_fn._batch_stats(torch.tensor([[60.0]])) is None


def test_adaface_defaults_and_margin_direction():
    loss_fn = AdaFaceLoss(8, 3)
    assert (loss_fn.m, loss_fn.h, loss_fn.s, loss_fn.t_alpha) == (0.4, 0.333, 64.0, 0.01)
    assert loss_fn.batch_mean.item() == 20.0 and loss_fn.batch_std.item() == 100.0
    loss_fn.eval()
    with torch.no_grad():
        loss_fn.kernel.copy_(torch.eye(8)[:, :3])
    emb = F.normalize(torch.tensor([[1.0, 0.2, 0, 0, 0, 0, 0, 0]]), dim=1)
    lab = torch.tensor([0])
    plain = 64.0 * emb @ torch.eye(8)[:, :3]
    with_margin = loss_fn.logits(emb, torch.tensor([[20.0]]), lab)
    assert with_margin[0, 0] < plain[0, 0]  # the margin always makes the target harder
    assert torch.allclose(with_margin[0, 1:], plain[0, 1:], atol=1e-3)


def test_adaface_gradcheck_and_bad_labels():
    loss_fn = AdaFaceLoss(6, 4).double().eval()
    emb = F.normalize(torch.randn(3, 6, dtype=torch.float64), dim=1).requires_grad_(True)
    norms = torch.tensor([[10.0], [20.0], [40.0]], dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, norms, labels), (emb,))
    with pytest.raises(ShapeError):
        loss_fn(emb, norms, torch.tensor([0, 4, 1]))


# ---------------------------------------------------------------- contrastive
def _supcon_reference(emb, labels, tau):
    z = F.normalize(emb, dim=1)
    losses = []
    n = len(labels)
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        if not pos:
            continue
        den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
        losses.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / den) for p in pos) / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def test_supcon_matches_reference_and_edge_cases():
    torch.manual_seed(5)
    emb = torch.randn(7, 5)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3])  # 2 and 3 have no positive: not anchors
    got = supervised_contrastive_loss(emb, labels, temperature=0.5)
    assert got.item() == pytest.approx(_supcon_reference(emb, labels, 0.5), rel=1e-5)
    e = emb.clone().double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: supervised_contrastive_loss(x, labels, temperature=0.5), (e,))
    none = supervised_contrastive_loss(e, torch.arange(7))
    assert none.item() == 0.0 and none.grad_fn is not None


# ---------------------------------------------------------------- total
def test_combine_losses_weights_and_parts():
    a = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(3.0, requires_grad=True)
    c = torch.tensor(5.0, requires_grad=True)
    out = combine_losses({"adaface": a, "qaconv": b, "occlusion": c}, {"adaface": 1.0, "qaconv": 0.5, "occlusion": 0.0})
    assert out.total.item() == pytest.approx(3.5)
    assert set(out.parts) == {"adaface", "qaconv", "occlusion"} and out.weights == {"adaface": 1.0, "qaconv": 0.5}
    out.total.backward()
    assert c.grad is None and b.grad.item() == 0.5
    assert out.as_floats()["loss_occlusion"] == 5.0
    with pytest.raises(KeyError):
        combine_losses({"bogus": a}, {})
