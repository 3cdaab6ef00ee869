"""Fused CPU kernels of the scorers (numba), for what eager PyTorch cannot fuse.

- Visibility-matched scorer: per block of probes x gallery images its two batched GEMMs run in
  MKL; what surrounds them was ~7 eager passes over the [p, g, D] and [p, g, VL] intermediates,
  each an L3 round trip (docs/experiments.md, issue 14). Here the pair weights are one pass and
  each pair's cosine (bias, dot product and both norms) one pass that reads the two GEMM outputs once.
- QAConv in bfloat16: the product is several times faster than in float32, but PyTorch's CPU max
  reductions over bfloat16 are not vectorised, so the product was widened to float32 (one more
  pass) and reduced twice. `pool_bf16_max` does both maxima in one pass over the bfloat16 bits,
  widening on the fly (exact: a bfloat16 is the top half of its float32).

Compiled on first use and cached on disk (numba's cache: beside this file, or the user's cache
directory where the package is read-only). `load()` returns None when numba is not installed, and
the scorer then runs its eager path. Shapes as in `visibility_matched`: p, g a block's probes and
gallery images, P, G the strip's, VL = V*L locations, D embedding size; float32 throughout.
"""

from __future__ import annotations

import math

import numpy as np

# reassociation (vectorised reductions) and fused multiply-adds only: no "no NaN / no inf"
# assumption, since pairs without overlap carry inf scales the kernel must step over
_FASTMATH = {"reassoc", "contract"}
_KERNELS = None


def write_weights(w, vp, vg, ratio, s, locs):
    """w [p, g, VL] <- vp[s + i] * vg[j] per location, view v >= 1 times ratio[v - 1, s + i, j]
    (view 0 unscaled: see `visibility_matched._strip_scales`). vp [P, VL], vg [g, VL] (the strip's),
    ratio [V-1, P, g]; s: the block's first probe."""
    n_p, n_g, vl = w.shape
    views = vl // locs
    row = np.empty(vl, dtype=np.float32)  # the probe's row scaled for this pair
    for i in range(n_p):
        for j in range(n_g):
            for k in range(locs):
                row[k] = vp[s + i, k]
            for v in range(1, views):
                r = ratio[v - 1, s + i, j]
                for k in range(v * locs, (v + 1) * locs):
                    row[k] = vp[s + i, k] * r
            for k in range(vl):
                w[i, j, k] = row[k] * vg[j, k]


def block_cosines(xp, xg, bias, inv_s0, ok, out, s):
    """out[s + i, j] <- cos(xp[i, j] + bias * inv_s0[s + i, j], xg[j, i] + bias * inv_s0[s + i, j]),
    0 where not ok[s + i, j]. xp [p, g, D] and xg [g, p, D] are the block's two GEMM outputs (raw
    embeddings without the bias, in units of s_0); bias [D]; inv_s0, ok, out [P, g] (the strip's);
    s: the block's first probe."""
    n_p, n_g, dim = xp.shape
    for i in range(n_p):
        for j in range(n_g):
            if not ok[s + i, j]:
                out[s + i, j] = 0.0
                continue
            k = inv_s0[s + i, j]
            dot = np.float32(0.0)
            sq_p = np.float32(0.0)
            sq_g = np.float32(0.0)
            for d in range(dim):
                b = bias[d] * k
                x = xp[i, j, d] + b
                y = xg[j, i, d] + b
                dot += x * y
                sq_p += x * x
                sq_g += y * y
            out[s + i, j] = dot / max(math.sqrt(sq_p * sq_g), np.float32(1e-12))


def pool_bf16_max(corr, pooled, off):
    """corr [p, R, S, n]: a chunk's correlations as bfloat16 bits (uint16) -> float32
    pooled[i, r, off + g] = max_s corr[i, r, s, g] and pooled[i, R + s, off + g] = max_r corr[i, r, s, g]
    (QAConv's two max poolings, `qaconv._iter_pooled_blocks`); pooled [p, R + S, >= off + n]."""
    n_p, n_r, n_s, n = corr.shape
    by_s = np.empty((n_s, n), dtype=np.float32)  # running max over r, per gallery location
    by_r = np.empty(n, dtype=np.float32)
    wide = np.empty(n, dtype=np.uint32)
    wide_f = wide.view(np.float32)  # the same bits read as float32
    for i in range(n_p):
        by_s[:] = -np.inf
        for r in range(n_r):
            by_r[:] = -np.inf
            for s in range(n_s):
                for g in range(n):
                    wide[g] = np.uint32(corr[i, r, s, g]) << np.uint32(16)
                for g in range(n):
                    v = wide_f[g]
                    by_r[g] = max(by_r[g], v)
                    by_s[s, g] = max(by_s[s, g], v)
            for g in range(n):
                pooled[i, r, off + g] = by_r[g]
        for s in range(n_s):
            for g in range(n):
                pooled[i, n_r + s, off + g] = by_s[s, g]


def _jit(fn, njit):
    try:
        return njit(nogil=True, fastmath=_FASTMATH, cache=True)(fn)
    except RuntimeError:  # no writable cache location: compile per process
        return njit(nogil=True, fastmath=_FASTMATH)(fn)


def load():
    """The compiled kernels (a namespace with `write_weights`, `block_cosines`, `pool_bf16_max`), or
    None without numba."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from numba import njit
        except ImportError:
            return None
        from types import SimpleNamespace

        _KERNELS = SimpleNamespace(**{f.__name__: _jit(f, njit) for f in (write_weights, block_cosines, pool_bf16_max)})
    return _KERNELS


__all__ = ["block_cosines", "load", "pool_bf16_max", "write_weights"]
