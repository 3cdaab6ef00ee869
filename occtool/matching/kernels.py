"""Fused CPU kernels of the visibility-matched scorer (numba), for what eager PyTorch cannot fuse.

Per block of probes x gallery images the scorer's two batched GEMMs run in MKL; what surrounds
them was ~7 eager passes over the [p, g, D] and [p, g, VL] intermediates, each an L3 round trip
(docs/experiments.md, issue 14). Here the pair weights are one pass and each pair's cosine (bias,
dot product and both norms) is one pass that reads the two GEMM outputs once.

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


def write_weights(w, vp, vg, ratio, s, t, locs):
    """w [p, g, VL] <- vp[s + i] * vg[t + j] per location, view v >= 1 times ratio[v - 1, s + i, t + j]
    (view 0 unscaled: see `visibility_matched._strip_scales`). vp [P, VL], vg [G, VL], ratio [V-1, P, G]."""
    n_p, n_g, vl = w.shape
    views = vl // locs
    row = np.empty(vl, dtype=np.float32)  # the probe's row scaled for this pair
    for i in range(n_p):
        for j in range(n_g):
            for k in range(locs):
                row[k] = vp[s + i, k]
            for v in range(1, views):
                r = ratio[v - 1, s + i, t + j]
                for k in range(v * locs, (v + 1) * locs):
                    row[k] = vp[s + i, k] * r
            for k in range(vl):
                w[i, j, k] = row[k] * vg[t + j, k]


def block_cosines(xp, xg, bias, inv_s0, ok, out, s, t):
    """out[s + i, t + j] <- cos(xp[i, j] + bias * inv_s0[s + i, t + j], xg[j, i] + bias * inv_s0[...]),
    0 where not ok[s + i, t + j]. xp [p, g, D] and xg [g, p, D] are the block's two GEMM outputs
    (raw embeddings without the bias, in units of s_0); bias [D]; inv_s0, ok, out [P, G]."""
    n_p, n_g, dim = xp.shape
    for i in range(n_p):
        for j in range(n_g):
            if not ok[s + i, t + j]:
                out[s + i, t + j] = 0.0
                continue
            k = inv_s0[s + i, t + j]
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
            out[s + i, t + j] = dot / max(math.sqrt(sq_p * sq_g), np.float32(1e-12))


def _jit(fn, njit):
    try:
        return njit(nogil=True, fastmath=_FASTMATH, cache=True)(fn)
    except RuntimeError:  # no writable cache location: compile per process
        return njit(nogil=True, fastmath=_FASTMATH)(fn)


def load():
    """The compiled kernels (a namespace with `write_weights`, `block_cosines`), or None without numba."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from numba import njit
        except ImportError:
            return None
        from types import SimpleNamespace

        _KERNELS = SimpleNamespace(write_weights=_jit(write_weights, njit), block_cosines=_jit(block_cosines, njit))
    return _KERNELS


__all__ = ["block_cosines", "load", "write_weights"]
