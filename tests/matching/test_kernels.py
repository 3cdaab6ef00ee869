"""The fused numba kernels of the visibility-matched scorer against the torch formulas they
replace, and how they load without numba or without a writable cache."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from occtool.matching import kernels


@pytest.fixture(scope="module")
def compiled():
    k = kernels.load()
    if k is None:
        pytest.skip("numba is not installed: no fused kernels")
    return k


@pytest.mark.parametrize("views", [1, 2, 3])
def test_write_weights_is_the_outer_product_with_each_view_scaled(compiled, views):
    g = torch.Generator().manual_seed(views)
    locs = 7
    vp, vg = torch.rand(6, views * locs, generator=g), torch.rand(9, views * locs, generator=g)
    ratio = torch.rand(views - 1, 6, 9, generator=g) + 0.5
    s, n_p = 2, 4  # a block of the strip's probes: rows s..
    w = np.full((n_p, 9, views * locs), np.nan, dtype=np.float32)
    compiled.write_weights(w, vp.numpy(), vg.numpy(), ratio.numpy(), s, locs)
    want = (vp[s:s + n_p, None] * vg[None]).unflatten(-1, (views, locs))
    for v in range(1, views):
        want[:, :, v] *= ratio[v - 1, s:s + n_p, :, None]
    torch.testing.assert_close(torch.from_numpy(w), want.flatten(-2), rtol=1e-6, atol=0)


def test_block_cosines_add_the_scaled_bias_and_skip_pairs_without_overlap(compiled):
    g = torch.Generator().manual_seed(0)
    n_p, n_g, dim = 3, 4, 37  # D not a multiple of any vector width
    xp, xg = torch.randn(n_p, n_g, dim, generator=g), torch.randn(n_g, n_p, dim, generator=g)
    bias = torch.randn(dim, generator=g)
    inv_s0 = torch.rand(5, n_g, generator=g) + 0.1
    ok = torch.ones(5, n_g, dtype=torch.bool)
    ok[1, 2] = False
    inv_s0[1, 2] = float("inf")  # what a pair without overlap carries: must not leak into the score
    out = np.full((5, n_g + 2), np.nan, dtype=np.float32)
    view = out[:, 2:]  # the strip's columns of a wider score matrix, as the scorer passes them
    compiled.block_cosines(xp.numpy(), xg.numpy(), bias.numpy(), inv_s0.numpy(), ok.numpy(), view, 1)
    k = inv_s0[1:4, :, None]
    want = F.cosine_similarity(xp + bias * k, xg.transpose(0, 1) + bias * k, dim=-1)
    want = torch.where(ok[1:4], want, 0.0)
    torch.testing.assert_close(torch.from_numpy(out[1:4, 2:]), want, rtol=1e-5, atol=1e-6)
    assert out[1, 2 + 2] == 0.0 and np.isnan(out[0]).all() and np.isnan(out[:, :2]).all()  # only the block written


@pytest.mark.parametrize("n", [1, 13, 32])
def test_pool_bf16_max_is_both_maxima_of_the_widened_product(compiled, n):
    g = torch.Generator().manual_seed(n)
    corr = torch.randn(2, 5, 4, n, generator=g).to(torch.bfloat16)  # [p, R, S, n]
    corr[0, 1, 2, 0] = float("-inf")  # a value max pooling must step over
    pooled = np.full((2, 5 + 4, n + 3), np.nan, dtype=np.float32)
    compiled.pool_bf16_max(corr.view(torch.int16).numpy().view(np.uint16), pooled, 3)
    wide = corr.float()
    assert torch.equal(torch.from_numpy(pooled[:, :5, 3:]), wide.amax(2))  # exact: no rounding anywhere
    assert torch.equal(torch.from_numpy(pooled[:, 5:, 3:]), wide.amax(1))
    assert np.isnan(pooled[:, :, :3]).all()  # only its own columns written


def test_load_returns_none_without_numba(monkeypatch):
    monkeypatch.setattr(kernels, "_KERNELS", None)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    assert kernels.load() is None


def test_load_compiles_without_a_disk_cache_where_none_is_writable(monkeypatch):
    """numba refuses cache=True when no cache location is writable (a read-only install, no home
    directory): the kernels then compile per process instead of failing."""
    numba = pytest.importorskip("numba")
    real = numba.njit

    def njit(*args, **opts):  # numba calls it too, positionally, while compiling
        if opts.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **opts)

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setattr(kernels, "_KERNELS", None)
    k = kernels.load()
    out = np.zeros((1, 1), np.float32)
    one = np.ones((1, 1, 2), np.float32)
    k.block_cosines(one, one, np.zeros(2, np.float32), np.ones((1, 1), np.float32), np.ones((1, 1), bool), out, 0)
    assert out[0, 0] == pytest.approx(1.0)
    assert k.write_weights.py_func is kernels.write_weights and not k.block_cosines._cache_hits
