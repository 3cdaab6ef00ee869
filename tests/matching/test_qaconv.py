"""occtool.matching: occlusion-aware QAConv pooling, its chunking and the QAConv head."""

from __future__ import annotations

import itertools

import pytest
import torch

from occtool.errors import OcctoolError, ShapeError
from occtool.matching import (
    QAConvMatcher,
    normalize_locations,
    plan_chunks,
    qaconv_max_scores,
    resolve_score_dtype,
)
from occtool.matching.reference import qaconv_naive_scores


def reference_loop(probe, gallery, probe_vis, gallery_vis):
    """Slow, obviously correct: explicit loops over p, g, r, s of S[p,g,r,s] * v_p[r] * v_g[s]."""
    num_p, c, h, w = probe.shape
    num_g = gallery.shape[0]
    L = h * w
    fp = probe.reshape(num_p, c, L)
    fg = gallery.reshape(num_g, c, L)
    vp = probe_vis.reshape(num_p, L)
    vg = gallery_vis.reshape(num_g, L)
    out = torch.empty(num_p, num_g, 2 * L, dtype=probe.dtype)
    for p, g in itertools.product(range(num_p), range(num_g)):
        sw = [[float(fp[p, :, r] @ fg[g, :, s]) * float(vp[p, r]) * float(vg[g, s]) for s in range(L)] for r in range(L)]
        for r in range(L):
            out[p, g, r] = max(sw[r][s] for s in range(L))
        for s in range(L):
            out[p, g, L + s] = max(sw[r][s] for r in range(L))
    return out


def _maps(n, c=5, h=2, w=3, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=gen, dtype=dtype)


def _vis(n, h=2, w=3, dtype=torch.float64, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=gen, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# qaconv_max_scores: values


def test_matches_reference_loop_float64_with_random_visibility():
    probe, gallery = _maps(3, seed=0), _maps(4, seed=1)  # H=2, W=3: non-square catches H/W mix-ups
    pv, gv = _vis(3, seed=2), _vis(4, seed=3)
    got = qaconv_max_scores(probe, gallery, pv, gv)
    assert got.shape == (3, 4, 12) and got.dtype == torch.float64
    ref = reference_loop(probe, gallery, pv, gv)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    # and the materialised-weights formula of the design notes
    torch.testing.assert_close(got, qaconv_naive_scores(probe, gallery, pv, gv), atol=1e-12, rtol=0)


def test_no_visibility_is_plain_qaconv():
    probe, gallery = _maps(3, seed=4), _maps(5, seed=5)
    ones_p = torch.ones(3, 1, 2, 3, dtype=torch.float64)
    ones_g = torch.ones(5, 1, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(qaconv_max_scores(probe, gallery), reference_loop(probe, gallery, ones_p, ones_g), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_visible_equals_plain_exactly(dtype):
    probe, gallery = _maps(6, c=16, h=7, w=7, dtype=dtype, seed=6), _maps(9, c=16, h=7, w=7, dtype=dtype, seed=7)
    plain = qaconv_max_scores(probe, gallery)
    ones_p = torch.ones(6, 1, 7, 7, dtype=dtype)
    ones_g = torch.ones(9, 1, 7, 7, dtype=dtype)
    assert torch.equal(qaconv_max_scores(probe, gallery, ones_p, ones_g), plain)
    assert torch.equal(qaconv_max_scores(probe, gallery, ones_p, None), plain)
    assert torch.equal(qaconv_max_scores(probe, gallery, None, ones_g), plain)


def test_zero_visibility_location_is_ignored():
    probe, gallery = _maps(3, c=8, h=3, w=3, seed=8), _maps(4, c=8, h=3, w=3, seed=9)
    pv, gv = _vis(3, 3, 3, seed=10), _vis(4, 3, 3, seed=11)
    pv[1, 0, 2, 0] = 0.0  # probe 1, location r = 6
    gv[2, 0, 0, 1] = 0.0  # gallery 2, location s = 1
    before = qaconv_max_scores(probe, gallery, pv, gv)
    probe2, gallery2 = probe.clone(), gallery.clone()
    probe2[1, :, 2, 0] = 100.0 * torch.randn(8, dtype=torch.float64)
    gallery2[2, :, 0, 1] = -50.0 * torch.randn(8, dtype=torch.float64)
    after = qaconv_max_scores(probe2, gallery2, pv, gv)
    assert torch.equal(before, after)
    # its own pooled value is the weighted correlation 0
    assert torch.all(after[1, :, 6] == 0)
    assert torch.all(after[:, 2, 9 + 1] == 0)
    # a visible location does matter (the test above is not vacuous)
    probe2[0, :, 0, 0] += 1.0
    assert not torch.equal(qaconv_max_scores(probe2, gallery2, pv, gv), after)


def test_gradcheck_features_and_visibilities():
    gen = torch.Generator().manual_seed(12)
    probe = torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    gallery = torch.randn(3, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    # visibilities away from 0 so that no two weighted correlations tie
    pv = (0.2 + 0.8 * torch.rand(2, 1, 2, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    gv = (0.2 + 0.8 * torch.rand(3, 1, 2, 2, generator=gen, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: qaconv_max_scores(a, b, c, d, chunk_size=2), (probe, gallery, pv, gv), eps=1e-6, atol=1e-6
    )


def test_gradient_reaches_every_input_and_matches_naive():
    probe, gallery = _maps(3, seed=13).requires_grad_(), _maps(4, seed=14).requires_grad_()
    pv, gv = _vis(3, seed=15).requires_grad_(), _vis(4, seed=16).requires_grad_()
    weights = torch.randn(3, 4, 12, dtype=torch.float64)
    grads = torch.autograd.grad((qaconv_max_scores(probe, gallery, pv, gv, chunk_size=3) * weights).sum(), (probe, gallery, pv, gv))
    ref = torch.autograd.grad((qaconv_naive_scores(probe, gallery, pv, gv) * weights).sum(), (probe, gallery, pv, gv))
    for got, exp in zip(grads, ref):
        torch.testing.assert_close(got, exp, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------------------
# chunking, ordering, devices


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 16, 23, 1000])
def test_chunked_equals_unchunked_float32_exactly(chunk_size):
    # the model's sizes: matching features 128 x 7 x 7
    probe, gallery = _maps(10, c=128, h=7, w=7, dtype=torch.float32, seed=17), _maps(23, c=128, h=7, w=7, dtype=torch.float32, seed=18)
    pv, gv = _vis(10, 7, 7, torch.float32, seed=19), _vis(23, 7, 7, torch.float32, seed=20)
    whole = qaconv_max_scores(probe, gallery, pv, gv, chunk_size=23)
    assert torch.equal(qaconv_max_scores(probe, gallery, pv, gv, chunk_size=chunk_size), whole)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 100])
def test_chunked_equals_unchunked_float64(chunk_size):
    # BLAS (MKL dgemm) picks different kernels for different tiny shapes, which can change the
    # last bit of a float64 dot product; chunking changes nothing else
    probe, gallery = _maps(4, seed=21), _maps(11, seed=22)
    pv, gv = _vis(4, seed=23), _vis(11, seed=24)
    whole = qaconv_max_scores(probe, gallery, pv, gv, chunk_size=11)
    torch.testing.assert_close(qaconv_max_scores(probe, gallery, pv, gv, chunk_size=chunk_size), whole, atol=1e-13, rtol=0)


def test_byte_budget_chunking_splits_probes_and_gallery():
    probe, gallery = _maps(9, c=32, h=7, w=7, dtype=torch.float32, seed=25), _maps(40, c=32, h=7, w=7, dtype=torch.float32, seed=26)
    pv, gv = _vis(9, 7, 7, torch.float32, seed=27), _vis(40, 7, 7, torch.float32, seed=28)
    per_pair = 49 * 49 * 4
    pc, gc = plan_chunks(9, 40, 49, 4, max_chunk_bytes=20 * per_pair)
    assert (pc, gc) == (1, 20)  # < 16 gallery items beside all probes: probes are split instead
    assert plan_chunks(9, 40, 49, 4, max_chunk_bytes=1) == (1, 1)
    assert plan_chunks(9, 40, 49, 4, chunk_size=7) == (9, 7)
    whole = qaconv_max_scores(probe, gallery, pv, gv, chunk_size=40)
    for budget in (1, 20 * per_pair, 100 * per_pair, 10**9):
        got = qaconv_max_scores(probe, gallery, pv, gv, max_chunk_bytes=budget)
        torch.testing.assert_close(got, whole, atol=1e-6, rtol=0)


def test_gallery_permutation_permutes_columns():
    probe, gallery = _maps(5, c=64, h=7, w=7, dtype=torch.float32, seed=29), _maps(12, c=64, h=7, w=7, dtype=torch.float32, seed=30)
    pv, gv = _vis(5, 7, 7, torch.float32, seed=31), _vis(12, 7, 7, torch.float32, seed=32)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(33))
    base = qaconv_max_scores(probe, gallery, pv, gv, chunk_size=5)
    permuted = qaconv_max_scores(probe, gallery[perm], pv, gv[perm], chunk_size=5)
    torch.testing.assert_close(permuted, base[:, perm], atol=1e-6, rtol=0)
    pperm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(qaconv_max_scores(probe[pperm], gallery, pv[pperm], gv), base[pperm], atol=1e-6, rtol=0)


def test_empty_inputs():
    probe, gallery = _maps(3), _maps(0)
    assert qaconv_max_scores(probe, gallery).shape == (3, 0, 12)
    assert qaconv_max_scores(gallery, probe).shape == (0, 3, 12)


def test_reduced_precision_is_close_and_returns_input_dtype():
    probe = normalize_locations(_maps(6, c=64, h=7, w=7, dtype=torch.float32, seed=34))
    gallery = normalize_locations(_maps(10, c=64, h=7, w=7, dtype=torch.float32, seed=35))
    pv, gv = _vis(6, 7, 7, torch.float32, seed=36), _vis(10, 7, 7, torch.float32, seed=37)
    full = qaconv_max_scores(probe, gallery, pv, gv)
    low = qaconv_max_scores(probe, gallery, pv, gv, dtype="reduced")
    assert low.dtype == torch.float32
    assert (low - full).abs().max() < 2e-2  # bfloat16 has an 8-bit mantissa; |values| <= 1 here
    low16 = qaconv_max_scores(probe, gallery, pv, gv, dtype=torch.float16)
    assert (low16 - full).abs().max() < 5e-3


def test_fused_bfloat16_pooling_equals_the_widened_eager_maxima(monkeypatch):
    """On the CPU a bfloat16 product is max-pooled by one numba kernel over its bits; the eager
    path (widen to float32, two amax) gives the very same pooled values, chunks not multiples of
    the vector width included."""
    from occtool.matching import kernels

    if kernels.load() is None:
        pytest.skip("numba is not installed: no fused kernels")
    probe = normalize_locations(_maps(5, c=32, h=7, w=7, dtype=torch.float32, seed=40))
    gallery = normalize_locations(_maps(45, c=32, h=7, w=7, dtype=torch.float32, seed=41))
    pv, gv = _vis(5, 7, 7, torch.float32, seed=42), _vis(45, 7, 7, torch.float32, seed=43)
    kw = dict(dtype="bf16", max_chunk_bytes=3 * 49 * 49 * 13 * 4)  # 3 probes x 13 gallery per chunk
    fused = qaconv_max_scores(probe, gallery, pv, gv, **kw)
    monkeypatch.setattr(kernels, "load", lambda: None)
    assert torch.equal(fused, qaconv_max_scores(probe, gallery, pv, gv, **kw))


def test_resolve_score_dtype():
    assert resolve_score_dtype(None, "cpu") is None
    assert resolve_score_dtype("none", "cpu") is None
    assert resolve_score_dtype("reduced", "cpu") is torch.bfloat16
    assert resolve_score_dtype("reduced", "cuda") is torch.float16
    assert resolve_score_dtype("bf16", "cpu") is torch.bfloat16
    assert resolve_score_dtype(torch.float16, "cpu") is torch.float16
    with pytest.raises(OcctoolError, match="int8"):
        resolve_score_dtype("int8", "cpu")
    with pytest.raises(OcctoolError):
        resolve_score_dtype(torch.int32, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_matches_cpu_and_gallery_may_stay_on_cpu():
    probe, gallery = _maps(5, c=32, h=7, w=7, dtype=torch.float32, seed=38), _maps(9, c=32, h=7, w=7, dtype=torch.float32, seed=39)
    pv, gv = _vis(5, 7, 7, torch.float32, seed=40), _vis(9, 7, 7, torch.float32, seed=41)
    cpu = qaconv_max_scores(probe, gallery, pv, gv)
    gpu = qaconv_max_scores(probe.cuda(), gallery.cuda(), pv.cuda(), gv.cuda(), chunk_size=4)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    mixed = qaconv_max_scores(probe.cuda(), gallery, pv.cuda(), gv, chunk_size=4)  # gallery streamed
    torch.testing.assert_close(mixed.cpu(), cpu, atol=1e-5, rtol=0)
    half = qaconv_max_scores(probe.cuda(), gallery.cuda(), pv.cuda(), gv.cuda(), dtype="reduced")
    assert half.dtype == torch.float32
    m = QAConvMatcher(num_features=32, height=7, width=7).cuda().eval()
    assert m(probe.cuda(), gallery.cuda(), pv.cuda(), gv.cuda()).shape == (5, 9)


# ---------------------------------------------------------------------------------------------
# shape errors


@pytest.mark.parametrize(
    "probe_shape, gallery_shape, pv_shape, gv_shape, fragment",
    [
        ((3, 5, 6), (4, 5, 2, 3), None, None, "probe: expected [P, C, H, W] (4-D), got (3, 5, 6)"),
        ((3, 5, 2, 3), (4, 5, 6), None, None, "gallery: expected [G, C, H, W] (4-D), got (4, 5, 6)"),
        ((3, 5, 2, 3), (4, 6, 2, 3), None, None, "gallery: expected [G, 5, 2, 3] (C, H, W as the probe), got (4, 6, 2, 3)"),
        ((3, 5, 2, 3), (4, 5, 3, 2), None, None, "gallery: expected [G, 5, 2, 3] (C, H, W as the probe), got (4, 5, 3, 2)"),
        ((3, 5, 2, 3), (4, 5, 2, 3), (3, 2, 3), None, "probe_vis: expected [3, 1, 2, 3], got (3, 2, 3)"),
        ((3, 5, 2, 3), (4, 5, 2, 3), (2, 1, 2, 3), None, "probe_vis: expected [3, 1, 2, 3], got (2, 1, 2, 3)"),
        ((3, 5, 2, 3), (4, 5, 2, 3), None, (4, 1, 3, 2), "gallery_vis: expected [4, 1, 2, 3], got (4, 1, 3, 2)"),
    ],
)
def test_bad_shapes_raise_shape_error_naming_expected_and_got(probe_shape, gallery_shape, pv_shape, gv_shape, fragment):
    probe, gallery = torch.randn(probe_shape), torch.randn(gallery_shape)
    pv = None if pv_shape is None else torch.rand(pv_shape)
    gv = None if gv_shape is None else torch.rand(gv_shape)
    with pytest.raises(ShapeError) as err:
        qaconv_max_scores(probe, gallery, pv, gv)
    assert str(err.value) == fragment


def test_bad_types_and_chunk_size():
    with pytest.raises(ShapeError, match="floating-point"):
        qaconv_max_scores(torch.ones(2, 3, 2, 2, dtype=torch.int64), torch.ones(2, 3, 2, 2, dtype=torch.int64))
    with pytest.raises(ShapeError, match="torch.Tensor"):
        qaconv_max_scores([[1.0]], torch.ones(2, 3, 2, 2))
    with pytest.raises(OcctoolError, match="chunk_size"):
        qaconv_max_scores(torch.ones(2, 3, 2, 2), torch.ones(2, 3, 2, 2), chunk_size=0)
    with pytest.raises(ShapeError, match=r"maps: expected \[N, C, H, W\]"):
        normalize_locations(torch.ones(3, 4))


# ---------------------------------------------------------------------------------------------
# QAConvMatcher


def _matcher_inputs(p=4, g=6, c=16, h=7, w=7, seed=50):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(p, c, h, w, generator=gen),
        torch.randn(g, c, h, w, generator=gen),
        torch.rand(p, 1, h, w, generator=gen),
        torch.rand(g, 1, h, w, generator=gen),
    )


def test_normalize_locations_unit_norm_per_location():
    x = torch.randn(3, 8, 4, 5) * 7
    n = normalize_locations(x)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(3, 4, 5))
    torch.testing.assert_close(n * x.norm(dim=1, keepdim=True), x)


def test_matcher_structure_and_state_dict():
    m = QAConvMatcher(num_features=16, height=7, width=5)
    assert isinstance(m.bn, torch.nn.BatchNorm1d) and m.bn.num_features == 1
    assert m.fc.in_features == 70 and m.fc.out_features == 1
    assert isinstance(m.logit_bn, torch.nn.BatchNorm1d) and m.logit_bn.num_features == 1
    assert not m.is_trained
    m.mark_trained()
    sd = m.state_dict()
    assert bool(sd["trained"])
    m2 = QAConvMatcher(num_features=16, height=7, width=5)
    m2.load_state_dict(sd)
    assert m2.is_trained
    with pytest.raises(OcctoolError, match="height"):
        QAConvMatcher(num_features=16, height=0, width=5)


def test_matcher_untrained_score_is_mean_of_pooled():
    probe, gallery, pv, gv = _matcher_inputs()
    m = QAConvMatcher(num_features=16, height=7, width=7).eval()
    got = m(probe, gallery, pv, gv)
    assert got.shape == (4, 6)
    pooled = qaconv_max_scores(normalize_locations(probe), normalize_locations(gallery), pv, gv)
    torch.testing.assert_close(got, pooled.mean(dim=2), atol=1e-6, rtol=0)
    # without visibilities: plain QAConv, and all-ones visibilities give the same scores exactly
    plain = m.score(probe, gallery)
    assert torch.equal(plain, m.score(probe, gallery, torch.ones_like(pv), torch.ones_like(gv)))
    # chunking never changes a score
    for cs in (1, 4, 100):
        assert torch.equal(m.score(probe, gallery, pv, gv, chunk_size=cs), got)


def test_matcher_trained_head_path():
    probe, gallery, pv, gv = _matcher_inputs(seed=51)
    m = QAConvMatcher(num_features=16, height=7, width=7)
    with torch.no_grad():
        m.bn.running_mean.fill_(0.3)
        m.bn.running_var.fill_(0.04)
        m.bn.weight.fill_(1.5)
        m.bn.bias.fill_(-0.1)
        m.fc.weight.copy_(torch.randn(1, 98, generator=torch.Generator().manual_seed(52)) / 10)
        m.fc.bias.fill_(0.2)
        m.logit_bn.running_mean.fill_(0.5)
        m.logit_bn.running_var.fill_(2.0)
        m.logit_bn.weight.fill_(3.0)
        m.logit_bn.bias.fill_(0.7)
    pooled = qaconv_max_scores(normalize_locations(probe), normalize_locations(gallery), pv, gv)  # [P, G, 98]
    untrained = m.eval().score(probe, gallery, pv, gv)
    torch.testing.assert_close(untrained, pooled.mean(dim=2), atol=1e-6, rtol=0)
    m.mark_trained()
    x = (pooled - 0.3) / torch.sqrt(torch.tensor(0.04 + 1e-5)) * 1.5 - 0.1
    logit = x @ m.fc.weight.detach()[0] + 0.2
    expected = (logit - 0.5) / torch.sqrt(torch.tensor(2.0 + 1e-5)) * 3.0 + 0.7
    torch.testing.assert_close(m(probe, gallery, pv, gv), expected, atol=1e-5, rtol=1e-5)
    # score() uses the running statistics even when the module is in training mode
    m.train()
    torch.testing.assert_close(m.score(probe, gallery, pv, gv, chunk_size=1), expected, atol=1e-5, rtol=1e-5)


def test_matcher_pair_logits_trains_head_and_features():
    gen = torch.Generator().manual_seed(53)
    maps = torch.randn(6, 16, 7, 7, generator=gen, requires_grad=True)
    vis = torch.rand(6, 1, 7, 7, generator=gen, requires_grad=True)
    m = QAConvMatcher(num_features=16, height=7, width=7).train()
    logits = m(maps, maps, vis, vis)  # training mode + autograd: pair_logits
    assert logits.shape == (6, 6)
    assert m.bn.num_batches_tracked.item() == 1
    labels = torch.eye(6)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).backward()
    for t in (maps.grad, vis.grad, m.fc.weight.grad, m.bn.weight.grad, m.logit_bn.weight.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0
    torch.testing.assert_close(m.pair_logits(maps, maps, vis, vis), logits, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # no autograd: inference path even in training mode
        assert m(maps, maps, vis, vis).shape == (6, 6)


def test_matcher_rejects_maps_of_another_size():
    m = QAConvMatcher(num_features=16, height=7, width=7)
    with pytest.raises(ShapeError, match=r"probe_maps: expected \[P, 16, 7, 7\].*got \(2, 8, 7, 7\)"):
        m.score(torch.randn(2, 8, 7, 7), torch.randn(3, 8, 7, 7))
    with pytest.raises(ShapeError, match=r"gallery: expected \[G, 16, 7, 7\].*got \(3, 16, 6, 6\)"):
        m.score(torch.randn(2, 16, 7, 7), torch.randn(3, 16, 6, 6))
    with pytest.raises(ShapeError, match=r"gallery_vis: expected \[3, 1, 7, 7\], got \(3, 7, 7\)"):
        m.score(torch.randn(2, 16, 7, 7), torch.randn(3, 16, 7, 7), None, torch.rand(3, 7, 7))


def test_matcher_reduced_precision_score():
    probe, gallery, pv, gv = _matcher_inputs(seed=54)
    m = QAConvMatcher(num_features=16, height=7, width=7).eval()
    full = m.score(probe, gallery, pv, gv)
    low = m.score(probe, gallery, pv, gv, dtype="reduced")
    assert low.dtype == torch.float32
    assert (low - full).abs().max() < 1e-2
