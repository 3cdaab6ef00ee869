"""Occlusion-aware QAConv (query-adaptive convolution) matching.

QAConv (Liao & Shao, ECCV 2020) compares two feature maps location by location: with per-location
features f_p[:, r] (probe) and f_g[:, s] (gallery), the correlation is
``S[p, g, r, s] = <f_p[:, r], f_g[:, s]>``. Each probe location keeps its best match over the
gallery locations and each gallery location its best match over the probe locations; the
2*H*W pooled values go through a small learned head (BatchNorm, Linear, BatchNorm) to one logit.

Occlusion weighting multiplies the correlation by ``v_p[r] * v_g[s]`` (1 = visible) *before*
the max pooling. The weight is separable, so it folds into the features:
``<v_p[r] f_p[:, r], v_g[s] f_g[:, s]> = v_p[r] v_g[s] S[p, g, r, s]`` exactly, and the weighted
correlation of a gallery chunk is one matrix product of the folded features. No [P, G, R, S]
weight tensor is built, and the [P, G, R, S] correlation itself only ever exists for one chunk of
the gallery at a time, reduced at once to [P, Gc, R + S]. With all visibilities 1 the folded
features are bit-identical to the plain ones, so the result equals plain QAConv exactly.

Shapes: P probes, G gallery items, C channels, H x W map, R = S = L = H*W locations
(r indexes probe locations, s gallery locations); Pc / Gc the probe / gallery chunk sizes.

Per chunk (no autograd):

    A    = folded probe chunk         [Pc*R, C]      (row p*R + r)
    B    = folded gallery chunk       [S*Gc, C]      (row s*Gc + g: gallery-minor)
    corr = A @ B.T                    [Pc*R, S*Gc] -> viewed [Pc, R, S, Gc]  (one reused buffer)
    max over s: amax(corr, 2)         [Pc, R, Gc]  -> pooled[:, :R, block cols]
    max over r: amax(corr, 1)         [Pc, S, Gc]  -> pooled[:, R:, block cols]

so the work is one large GEMM per chunk followed by two max reductions over the buffer, written
straight into a gallery-minor pooled buffer ``[Pc, R+S, Gb]`` of a block of up to 8 chunks. A
block's gallery maps are folded (scaled, transposed, cast) in one pass before its chunks, and the
block's pooled values are handed over at once (transposed into ``[P, G, R+S]``, or scored). Few,
large operations per chunk keep the per-operation (thread synchronisation) overhead small.
Putting the gallery index innermost makes both reductions run over a non-innermost axis, which
PyTorch's CPU kernels vectorise across the contiguous gallery axis (when Gc is a multiple of 32,
which the planner arranges); with the location axis innermost the max over its 49 values is
several times slower. Chunks are sized from a byte budget so that the correlation buffer stays
cache-friendly on CPU. A bfloat16 product on the CPU is pooled by one numba pass over its bits
(`kernels.pool_bf16_max`: both maxima, widened to float32 on the fly) where numba is installed;
PyTorch's bfloat16 max reductions there are not vectorised.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from occtool.errors import OcctoolError, ShapeError

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "DEFAULT_MAX_CHUNK_BYTES_CUDA",
    "QAConvMatcher",
    "normalize_locations",
    "plan_chunks",
    "qaconv_max_scores",
    "resolve_score_dtype",
]

#: Default size of the per-chunk correlation buffer [Pc*R, S*Gc] on CPU (bytes): large enough for
#: an efficient GEMM, small enough that the max reductions read it back from cache.
DEFAULT_MAX_CHUNK_BYTES = 32 * 2**20

#: Default on CPU for a reduced-precision (bfloat16) product: its GEMM is several times faster
#: (AMX / AVX-512 BF16), so the widening copy and the max reductions dominate; a smaller buffer
#: keeps them closer to the cache (bench_qaconv: 16 MiB measured best of 1-32 MiB here).
DEFAULT_MAX_CHUNK_BYTES_REDUCED = 16 * 2**20

#: Default on CUDA, where bigger chunks amortise kernel launches.
DEFAULT_MAX_CHUNK_BYTES_CUDA = 512 * 2**20

#: Gallery chunks are multiples of this (when larger): the CPU max kernels vectorise across the
#: innermost (gallery) axis in blocks of 32 floats. Probes are split before the gallery chunk
#: would drop below it.
_GALLERY_ALIGN = 32

#: Gallery chunks per block: a block is folded in one pass and its pooled values are handed over
#: at once, so per chunk there are only the GEMM and the two max reductions (few parallel regions).
_BLOCK_CHUNKS = 8

_NORM_EPS = 1e-12  # as F.normalize

_DTYPE_ALIASES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_score_dtype(dtype: torch.dtype | str | None, device: torch.device | str) -> torch.dtype | None:
    """The matmul dtype for scoring: None (the inputs' dtype), a torch float dtype, or a name.

    Names: ``"float32"``/``"fp32"``, ``"float64"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/
    ``"fp16"``, ``"none"``/``"auto"`` (= None) and ``"reduced"``: bfloat16 on CPU, float16 on CUDA.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and not dtype.is_floating_point:
            raise OcctoolError(f"score dtype must be a floating-point dtype, got {dtype}")
        return dtype
    name = str(dtype).strip().lower()
    if name in ("none", "auto", "", "default"):
        return None
    if name == "reduced":
        return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    if name in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[name]
    raise OcctoolError(
        f"score dtype: expected one of none, reduced, {', '.join(sorted(_DTYPE_ALIASES))}; got {dtype!r}"
    )


def normalize_locations(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2-normalise a feature map over channels at each location: [N, C, H, W] -> [N, C, H, W]."""
    _check_maps("maps", maps, "[N, C, H, W]")
    return F.normalize(maps, p=2.0, dim=1, eps=eps)


# --------------------------------------------------------------------------------------------
# validation


def _check_maps(name: str, x, expected: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor {expected}, got {type(x).__name__}")
    if x.dim() != 4:
        raise ShapeError(f"{name}: expected {expected} (4-D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ShapeError(f"{name}: expected a floating-point tensor {expected}, got dtype {x.dtype}")


def _check_inputs(probe, gallery, probe_vis, gallery_vis) -> None:
    _check_maps("probe", probe, "[P, C, H, W]")
    _check_maps("gallery", gallery, "[G, C, H, W]")
    _, c, h, w = probe.shape
    if tuple(gallery.shape[1:]) != (c, h, w):
        raise ShapeError(
            f"gallery: expected [G, {c}, {h}, {w}] (C, H, W as the probe), got {tuple(gallery.shape)}"
        )
    for name, vis, n in (("probe_vis", probe_vis, probe.shape[0]), ("gallery_vis", gallery_vis, gallery.shape[0])):
        if vis is None:
            continue
        if not isinstance(vis, torch.Tensor):
            raise ShapeError(f"{name}: expected a torch.Tensor [{n}, 1, {h}, {w}] or None, got {type(vis).__name__}")
        if tuple(vis.shape) != (n, 1, h, w):
            raise ShapeError(f"{name}: expected [{n}, 1, {h}, {w}], got {tuple(vis.shape)}")
        if not vis.is_floating_point():
            raise ShapeError(f"{name}: expected a floating-point tensor, got dtype {vis.dtype}")


def plan_chunks(
    num_probes: int,
    num_gallery: int,
    locations: int,
    itemsize: int,
    *,
    chunk_size: int | None = None,
    max_chunk_bytes: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[int, int]:
    """(probe chunk Pc, gallery chunk Gc) so that the correlation buffer Pc*L*Gc*L*itemsize
    stays within ``max_chunk_bytes`` (None: `DEFAULT_MAX_CHUNK_BYTES`, or
    `DEFAULT_MAX_CHUNK_BYTES_CUDA` on a CUDA device).

    An explicit ``chunk_size`` fixes Gc and keeps all probes in one chunk. Otherwise probes are
    split (into equal chunks) only when fewer than 32 gallery items would fit beside them, and
    Gc is rounded down to a multiple of 32.
    """
    p = max(int(num_probes), 1)
    g = max(int(num_gallery), 1)
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
            raise OcctoolError(f"chunk_size: expected a positive integer or None, got {chunk_size!r}")
        return p, min(int(chunk_size), g)
    if max_chunk_bytes is None:
        cuda = torch.device(device).type == "cuda"
        budget = DEFAULT_MAX_CHUNK_BYTES_CUDA if cuda else DEFAULT_MAX_CHUNK_BYTES
    else:
        budget = int(max_chunk_bytes)
    if budget < 1:
        raise OcctoolError(f"max_chunk_bytes: expected a positive integer, got {max_chunk_bytes!r}")
    pairs = max(1, budget // (locations * locations * itemsize))  # (probe, gallery) pairs per chunk
    pc = min(p, max(1, pairs // min(g, _GALLERY_ALIGN)))
    n_pc = -(-p // pc)
    pc = -(-p // n_pc)  # equal probe chunks
    gc = min(g, max(1, pairs // pc))
    if _GALLERY_ALIGN <= gc < g:
        gc -= gc % _GALLERY_ALIGN
    return pc, gc


# --------------------------------------------------------------------------------------------
# core


def _scale(maps: torch.Tensor, vis: torch.Tensor | None, normalize: bool) -> torch.Tensor | None:
    """Per-location factor ``[N, 1, L]`` folded into the features: v[l] (and 1/||f[:, l]||)."""
    n = maps.shape[0]
    scale = None
    if normalize:
        f = maps.reshape(n, maps.shape[1], -1)
        scale = 1.0 / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(_NORM_EPS)  # as F.normalize
    if vis is not None:
        v = vis.reshape(n, 1, -1).to(maps.dtype)
        scale = v if scale is None else scale * v
    return scale


def _fold_rows(maps: torch.Tensor, vis: torch.Tensor | None, *, normalize: bool, dtype: torch.dtype) -> torch.Tensor:
    """Probe side: [N, C, H, W] (+ [N, 1, H, W]) -> folded features ``[N*L, C]`` (row n*L + l)."""
    n, c = maps.shape[:2]
    f = maps.reshape(n, c, -1)  # [N, C, L]
    scale = _scale(maps, vis, normalize)
    if scale is not None:
        f = f * scale  # [N, C, L] * [N, 1, L]  (autograd-friendly; the probe side is small)
    folded = torch.empty((n, f.shape[2], c), dtype=dtype, device=f.device)
    folded.copy_(f.transpose(1, 2))  # one pass: transpose (+ cast) -> [N, L, C]
    return folded.view(-1, c)


def _fold_chunks(
    maps: torch.Tensor, vis: torch.Tensor | None, *, normalize: bool, dtype: torch.dtype, chunk: int
) -> list[torch.Tensor]:
    """Gallery side: [N, C, H, W] -> folded chunks of ``chunk`` items, each ``[L*n, C]`` (row l*n + g,
    gallery-minor), views of one contiguous buffer, written by one fused multiply (no autograd)."""
    n, c = maps.shape[:2]
    f = maps.reshape(n, c, -1)  # [N, C, L]
    L = f.shape[2]
    scale = _scale(maps, vis, normalize)  # [N, 1, L] or None
    k, rest = divmod(n, chunk)
    buf = torch.empty(n * L * c, dtype=dtype, device=f.device)
    out = []
    if k:
        dst = buf[: k * chunk * L * c].view(k, L, chunk, c)  # chunk-major, then location, then item
        src = f[: k * chunk].view(k, chunk, c, L).permute(0, 3, 1, 2)  # [k, L, chunk, C]
        if scale is None:
            dst.copy_(src)
        else:
            torch.mul(src, scale[: k * chunk].view(k, chunk, 1, L).permute(0, 3, 1, 2), out=dst)
        out += [dst[i].view(L * chunk, c) for i in range(k)]
    if rest:
        dst = buf[k * chunk * L * c :].view(L, rest, c)
        src = f[k * chunk :].permute(2, 0, 1)  # [L, rest, C]
        if scale is None:
            dst.copy_(src)
        else:
            torch.mul(src, scale[k * chunk :].permute(2, 0, 1), out=dst)
        out.append(dst.view(L * rest, c))
    return out


def _plan(probe, gallery, dtype, chunk_size, max_chunk_bytes):
    device = probe.device
    base = torch.promote_types(probe.dtype, gallery.dtype)
    cdtype = resolve_score_dtype(dtype, device) or base
    # the max reductions: on CPU half-precision reductions are not vectorised well, so a reduced-
    # precision product is widened to float32 (exactly) before them; on CUDA they stay as they are
    rdtype = torch.float32 if device.type != "cuda" and torch.finfo(cdtype).bits < 32 else cdtype
    num_p, c, h, w = probe.shape
    itemsize = torch.finfo(rdtype).bits // 8
    if max_chunk_bytes is None and device.type != "cuda" and rdtype != cdtype:
        max_chunk_bytes = DEFAULT_MAX_CHUNK_BYTES_REDUCED
    pc, gc = plan_chunks(
        num_p, gallery.shape[0], h * w, itemsize, chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, device=device
    )
    # gallery blocks of several chunks: folded once, pooled into one buffer, handed over at once
    budget = max_chunk_bytes or (DEFAULT_MAX_CHUNK_BYTES_CUDA if device.type == "cuda" else DEFAULT_MAX_CHUNK_BYTES)
    per_chunk = gc * h * w * max(c, 2 * pc) * itemsize  # folded features or pooled values of one chunk
    k = max(1, min(_BLOCK_CHUNKS, budget // max(per_chunk, 1)))
    return device, base, cdtype, rdtype, pc, gc, k


def _fused_bf16_pool(device: torch.device, cdtype: torch.dtype, rdtype: torch.dtype):
    """`kernels.pool_bf16_max` for a bfloat16 product reduced in float32 on the CPU, else None."""
    if device.type != "cpu" or cdtype != torch.bfloat16 or rdtype != torch.float32:
        return None
    from occtool.matching import kernels

    compiled = kernels.load()
    return None if compiled is None else compiled.pool_bf16_max


def _iter_pooled_blocks(
    probe: torch.Tensor,
    gallery: torch.Tensor,
    probe_vis: torch.Tensor | None,
    gallery_vis: torch.Tensor | None,
    *,
    chunk_size: int | None,
    max_chunk_bytes: int | None,
    dtype: torch.dtype | str | None,
    normalize: bool,
) -> Iterator[tuple[int, int, int, int, torch.Tensor]]:
    """No-autograd path. Yield (p0, p1, g0, g1, pooled ``[p1-p0, R+S, g1-g0]``) over all pairs.

    pooled is gallery-minor (``pooled[p, r, g]``, ``pooled[p, R+s, g]``), in the reduction dtype
    (the compute dtype; float32 for a half-precision product on CPU), and a view of a buffer that
    the next block overwrites: consume it before advancing. Computed on the probe's device;
    gallery blocks are moved there one at a time.
    """
    device, base, cdtype, rdtype, pc, gc, k = _plan(probe, gallery, dtype, chunk_size, max_chunk_bytes)
    num_p, num_g = probe.shape[0], gallery.shape[0]
    if not num_p or not num_g:
        return
    L = probe.shape[2] * probe.shape[3]
    gb = gc * k  # gallery block
    to_cuda = device.type == "cuda"  # asynchronous host->device copies only (device->host must sync)
    corr_buf = torch.empty(pc * L * gc * L, dtype=cdtype, device=device)  # one correlation chunk
    fused = _fused_bf16_pool(device, cdtype, rdtype)  # both maxima in one pass over the bfloat16 bits
    wide_buf = None if rdtype == cdtype or fused else torch.empty(pc * L * gc * L, dtype=rdtype, device=device)
    pool_buf = torch.empty(pc * 2 * L * min(gb, num_g), dtype=rdtype, device=device)
    for p0 in range(0, num_p, pc):
        p1 = min(p0 + pc, num_p)
        n_p = p1 - p0
        pv = None if probe_vis is None else probe_vis[p0:p1].to(device)
        a = _fold_rows(probe[p0:p1].to(base), pv, normalize=normalize, dtype=cdtype)  # [Pc*R, C]
        for b0 in range(0, num_g, gb):
            b1 = min(b0 + gb, num_g)
            gmaps = gallery[b0:b1].to(device=device, dtype=base, non_blocking=to_cuda)
            gv = None if gallery_vis is None else gallery_vis[b0:b1].to(device=device, non_blocking=to_cuda)
            pooled = pool_buf[: n_p * 2 * L * (b1 - b0)].view(n_p, 2 * L, b1 - b0)
            off = 0
            for b in _fold_chunks(gmaps, gv, normalize=normalize, dtype=cdtype, chunk=gc):  # [S*n, C]
                n = b.shape[0] // L
                corr = torch.mm(a, b.t(), out=corr_buf[: n_p * L * n * L].view(n_p * L, L * n))
                if fused:
                    fused(corr.view(torch.int16).numpy().view(np.uint16).reshape(n_p, L, L, n), pooled.numpy(), off)
                    off += n
                    continue
                if wide_buf is not None:
                    corr = wide_buf[: n_p * L * n * L].view(n_p * L, L * n).copy_(corr)
                corr = corr.view(n_p, L, L, n)  # [Pc, R, S, n]
                torch.amax(corr, dim=2, out=pooled[:, :L, off : off + n])  # max over s -> [Pc, R, n]
                torch.amax(corr, dim=1, out=pooled[:, L:, off : off + n])  # max over r -> [Pc, S, n]
                off += n
            yield p0, p1, b0, b1, pooled


def _iter_pooled_grad(
    probe: torch.Tensor,
    gallery: torch.Tensor,
    probe_vis: torch.Tensor | None,
    gallery_vis: torch.Tensor | None,
    *,
    chunk_size: int | None,
    max_chunk_bytes: int | None,
    dtype: torch.dtype | str | None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Autograd path: yield (p0, pooled ``[Pc, Gc, R+S]``) chunk by chunk, gallery in order.

    max(dim) keeps only argmax indices for the backward pass, never the correlation chunk.
    """
    device, base, cdtype, _, pc, gc, _ = _plan(probe, gallery, dtype, chunk_size, max_chunk_bytes)
    num_p, c = probe.shape[:2]
    num_g = gallery.shape[0]
    L = probe.shape[2] * probe.shape[3]
    for p0 in range(0, num_p, pc):
        p1 = min(p0 + pc, num_p)
        pv = None if probe_vis is None else probe_vis[p0:p1].to(device)
        a = _fold_rows(probe[p0:p1].to(base), pv, normalize=False, dtype=cdtype)  # [Pc*R, C]
        for g0 in range(0, num_g, gc):
            g1 = min(g0 + gc, num_g)
            gmaps = gallery[g0:g1].to(device=device, dtype=base)
            gv = None if gallery_vis is None else gallery_vis[g0:g1].to(device)
            f = gmaps.reshape(g1 - g0, c, L)
            if gv is not None:
                f = f * gv.reshape(g1 - g0, 1, L).to(f.dtype)
            b = f.permute(2, 0, 1).to(cdtype).reshape(L * (g1 - g0), c)  # [S*Gc, C], row s*Gc + g
            corr = torch.mm(a, b.t()).view(p1 - p0, L, L, g1 - g0)  # [Pc, R, S, Gc]
            by_probe = corr.max(dim=2).values  # [Pc, R, Gc]
            by_gallery = corr.max(dim=1).values  # [Pc, S, Gc]
            yield p0, torch.cat((by_probe, by_gallery), dim=1).transpose(1, 2)  # [Pc, Gc, R+S]


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def qaconv_max_scores(
    probe: torch.Tensor,
    gallery: torch.Tensor,
    probe_vis: torch.Tensor | None = None,
    gallery_vis: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype | str | None = None,
    max_chunk_bytes: int | None = None,
) -> torch.Tensor:
    """Occlusion-weighted QAConv max pooling of all (probe, gallery) pairs.

    probe ``[P, C, H, W]``, gallery ``[G, C, H, W]``, probe_vis ``[P, 1, H, W]`` / gallery_vis
    ``[G, 1, H, W]`` or None (all visible) -> ``[P, G, R + S]`` with R = S = H*W:

    - ``[..., r]`` for r < R: ``max_s S[p,g,r,s] * v_p[r] * v_g[s]`` (best match of probe location r),
    - ``[..., R + s]``: ``max_r S[p,g,r,s] * v_p[r] * v_g[s]`` (best match of gallery location s),

    where ``S[p,g,r,s] = <probe[p,:,r], gallery[g,:,s]>`` of the features *as given* (normalise
    first with `normalize_locations` for QAConv proper). The visibilities are folded into the
    features; the gallery is processed in chunks of ``chunk_size`` maps (None: as many as fit in
    ``max_chunk_bytes`` of correlation buffer, see `plan_chunks`; large probe sets are then
    chunked too), so memory beyond the inputs and the output is bounded whatever G is.

    ``dtype``: the matmul/max dtype (see `resolve_score_dtype`; ``"reduced"`` = bfloat16 on CPU,
    float16 on CUDA). The result has the inputs' dtype and the probe's device. Differentiable
    with respect to features and visibilities when they require grad (then the max keeps only
    argmax indices for the backward pass, never the correlation).
    """
    _check_inputs(probe, gallery, probe_vis, gallery_vis)
    num_p, _, h, w = probe.shape
    num_g = gallery.shape[0]
    L = h * w
    out_dtype = torch.promote_types(probe.dtype, gallery.dtype)
    kw = dict(chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, dtype=dtype)
    if _needs_grad(probe, gallery, probe_vis, gallery_vis):
        rows: dict[int, list[torch.Tensor]] = {}
        for p0, pooled in _iter_pooled_grad(probe, gallery, probe_vis, gallery_vis, **kw):
            rows.setdefault(p0, []).append(pooled.to(out_dtype))
        if not rows:
            return torch.zeros((num_p, num_g, 2 * L), dtype=out_dtype, device=probe.device)
        return torch.cat([torch.cat(parts, dim=1) for _, parts in sorted(rows.items())], dim=0)
    out = torch.empty((num_p, num_g, 2 * L), dtype=out_dtype, device=probe.device)
    for p0, p1, g0, g1, pooled in _iter_pooled_blocks(probe, gallery, probe_vis, gallery_vis, normalize=False, **kw):
        out[p0:p1, g0:g1].copy_(pooled.transpose(1, 2))  # [Pc, 2L, Gb] -> [Pc, Gb, 2L]
    return out


# --------------------------------------------------------------------------------------------
# learned head


class QAConvMatcher(nn.Module):
    """QAConv matcher with occlusion weighting and the learned QAConv head.

    Head (as in the original QAConv): ``BatchNorm1d(1)`` over all 2*H*W pooled values of a pair,
    ``Linear(2*H*W -> 1)`` (initialised to the mean), ``BatchNorm1d(1)`` on the logit.

    - `pair_logits`: training, all pairs of a batch ``[P, G]`` with autograd; the head runs in the
      module's mode (batch statistics in train mode).
    - `score`: inference in bounded memory (chunked, no autograd); the head uses its running
      statistics whatever the module's mode, so chunking never changes a score. Until the head has
      been trained (buffer ``trained``, set by `mark_trained` and saved in the state dict) the score
      is the parameter-free mean of the pooled values (`untrained_score`).
    - `forward`: `pair_logits` in training mode with autograd on, `score` otherwise.

    Feature maps are L2-normalised per location here (`normalize_locations`); they are not
    modified in place.
    """

    def __init__(self, *, num_features: int, height: int, width: int) -> None:
        super().__init__()
        for name, val in (("num_features", num_features), ("height", height), ("width", width)):
            if isinstance(val, bool) or int(val) != val or val < 1:
                raise OcctoolError(f"QAConvMatcher: {name} must be a positive integer, got {val!r}")
        self.num_features = int(num_features)
        self.height = int(height)
        self.width = int(width)
        self.locations = self.height * self.width
        self.bn = nn.BatchNorm1d(1)
        self.fc = nn.Linear(2 * self.locations, 1)
        self.logit_bn = nn.BatchNorm1d(1)
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))
        self.reset_parameters()

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, height={self.height}, width={self.width}"

    def reset_parameters(self) -> None:
        self.bn.reset_parameters()
        self.logit_bn.reset_parameters()
        with torch.no_grad():
            self.fc.weight.fill_(1.0 / (2 * self.locations))
            self.fc.bias.zero_()
            self.trained.fill_(False)

    def mark_trained(self, value: bool = True) -> None:
        """Record that the head has been trained: `score` then uses it instead of the mean."""
        self.trained.fill_(bool(value))

    @property
    def is_trained(self) -> bool:
        return bool(self.trained.item())

    # -- checks -------------------------------------------------------------------------------

    def _check(self, probe_maps, gallery_maps, probe_vis, gallery_vis) -> None:
        _check_maps("probe_maps", probe_maps, f"[P, {self.num_features}, {self.height}, {self.width}]")
        expected = (self.num_features, self.height, self.width)
        if tuple(probe_maps.shape[1:]) != expected:
            raise ShapeError(
                f"probe_maps: expected [P, {self.num_features}, {self.height}, {self.width}] "
                f"(the matcher's num_features, height, width), got {tuple(probe_maps.shape)}"
            )
        _check_maps("gallery_maps", gallery_maps, f"[G, {self.num_features}, {self.height}, {self.width}]")
        _check_inputs(probe_maps, gallery_maps, probe_vis, gallery_vis)

    # -- head ---------------------------------------------------------------------------------

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Learned head in the module's mode: pooled ``[N, 2*H*W]`` -> logits ``[N]``."""
        if pooled.dim() != 2 or pooled.shape[1] != 2 * self.locations:
            raise ShapeError(f"pooled: expected [N, {2 * self.locations}], got {tuple(pooled.shape)}")
        x = pooled.to(self.fc.weight.dtype).unsqueeze(1)  # [N, 1, 2L]: one BN channel
        x = self.bn(x).squeeze(1)  # [N, 2L]
        x = self.fc(x)  # [N, 1]
        return self.logit_bn(x).squeeze(1)  # [N]

    def _head_eval(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head with running statistics (inference) on gallery-minor pooled values:
        ``[Pc, 2L, Gc] -> [Pc, Gc]``. In eval mode both BatchNorms are scalar affine maps, so
        the head is ``a2 * (a1 * <w, x> + b1 * sum(w) + bias) + b2``: one small matmul."""
        bn, lbn, w = self.bn, self.logit_bn, self.fc.weight[0]  # w: [2L]
        a1 = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [1]
        b1 = bn.bias - bn.running_mean * a1
        a2 = lbn.weight / torch.sqrt(lbn.running_var + lbn.eps)
        b2 = lbn.bias - lbn.running_mean * a2
        logit = a1 * torch.matmul(w, pooled) + (b1 * w.sum() + self.fc.bias)  # [Pc, Gc]
        return a2 * logit + b2

    @staticmethod
    def untrained_score(pooled: torch.Tensor) -> torch.Tensor:
        """Parameter-free score: the mean of the 2*H*W pooled values, ``[..., 2L] -> [...]``
        (`score` computes the same mean on its gallery-minor chunks)."""
        return pooled.mean(dim=-1)

    # -- entry points -------------------------------------------------------------------------

    def pair_logits(
        self,
        probe_maps: torch.Tensor,
        gallery_maps: torch.Tensor,
        probe_vis: torch.Tensor | None = None,
        gallery_vis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training logits of all pairs ``[P, G]`` (for a batch: probe = gallery = the batch).

        Normalises per location, pools with `qaconv_max_scores` (autograd through features and
        visibilities) and always applies the learned head in the module's mode.
        """
        self._check(probe_maps, gallery_maps, probe_vis, gallery_vis)
        pooled = qaconv_max_scores(
            normalize_locations(probe_maps), normalize_locations(gallery_maps), probe_vis, gallery_vis
        )  # [P, G, 2L]
        num_p, num_g = pooled.shape[:2]
        return self.head(pooled.reshape(num_p * num_g, -1)).view(num_p, num_g)

    @torch.no_grad()
    def score(
        self,
        probe_maps: torch.Tensor,
        gallery_maps: torch.Tensor,
        probe_vis: torch.Tensor | None = None,
        gallery_vis: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
        dtype: torch.dtype | str | None = None,
        max_chunk_bytes: int | None = None,
    ) -> torch.Tensor:
        """Inference scores ``[P, G]`` (float32 or the head's dtype) in bounded memory.

        The gallery is normalised, folded, correlated, pooled and scored one chunk at a time, so
        neither the [P, G, R, S] correlation nor the [P, G, 2L] pooled values are ever held
        whole: beyond the inputs, memory is the chunk buffer plus the [P, G] result.
        ``chunk_size``/``max_chunk_bytes``/``dtype`` as in `qaconv_max_scores`.
        """
        self._check(probe_maps, gallery_maps, probe_vis, gallery_vis)
        num_p, num_g = probe_maps.shape[0], gallery_maps.shape[0]
        out = torch.empty((num_p, num_g), dtype=self.fc.weight.dtype, device=probe_maps.device)
        use_head = self.is_trained
        for p0, p1, g0, g1, pooled in _iter_pooled_blocks(
            probe_maps, gallery_maps, probe_vis, gallery_vis, chunk_size=chunk_size,
            max_chunk_bytes=max_chunk_bytes, dtype=dtype, normalize=True,
        ):
            pooled = pooled.to(out.dtype)  # [Pc, 2L, Gb], gallery-minor
            out[p0:p1, g0:g1] = self._head_eval(pooled) if use_head else pooled.mean(dim=1)
        return out

    def forward(
        self,
        probe_maps: torch.Tensor,
        gallery_maps: torch.Tensor,
        probe_vis: torch.Tensor | None = None,
        gallery_vis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[P, G]`` logits: `pair_logits` in training mode with autograd on, else `score`."""
        if self.training and torch.is_grad_enabled():
            return self.pair_logits(probe_maps, gallery_maps, probe_vis, gallery_vis)
        return self.score(probe_maps, gallery_maps, probe_vis, gallery_vis)
