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
    max over s: corr.amax(2)          [Pc, R, Gc]  -> pooled[..., :R]  (as [Pc, Gc, R])
    max over r: corr.amax(1)          [Pc, S, Gc]  -> pooled[..., R:]  (as [Pc, Gc, S])

so the work is one large GEMM per chunk followed by two max reductions over the buffer. Putting
the gallery index innermost makes both reductions run over a non-innermost axis, which PyTorch's
CPU kernels vectorise across the contiguous gallery axis (when Gc is a multiple of 32, which the
planner arranges); with the location axis innermost the max over its 49 values is several times
slower. Chunks are sized from a byte budget so that the buffer stays cache-friendly on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator

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

#: Default on CUDA, where bigger chunks amortise kernel launches.
DEFAULT_MAX_CHUNK_BYTES_CUDA = 512 * 2**20

#: Gallery chunks are multiples of this (when larger): the CPU max kernels vectorise across the
#: innermost (gallery) axis in blocks of 32 floats. Probes are split before the gallery chunk
#: would drop below it.
_GALLERY_ALIGN = 32

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


def _fold(
    maps: torch.Tensor, vis: torch.Tensor | None, *, normalize: bool, dtype: torch.dtype, location_major: bool
) -> torch.Tensor:
    """[N, C, H, W] (+ [N, 1, H, W]) -> folded features, contiguous, in dtype:
    ``[N*L, C]`` (row n*L + l) or, with ``location_major``, ``[L*N, C]`` (row l*N + n)."""
    n, c = maps.shape[:2]
    f = maps.reshape(n, c, -1)  # [N, C, L]
    if normalize:
        f = F.normalize(f, p=2.0, dim=1)
    if vis is not None:
        f = f * vis.reshape(n, 1, -1).to(f.dtype)  # v[l] * f[:, l]
    L = f.shape[2]
    if location_major:
        folded = torch.empty((L, n, c), dtype=dtype, device=f.device)
        folded.copy_(f.permute(2, 0, 1))  # one pass: permute (+ cast) -> [L, N, C]
    else:
        folded = torch.empty((n, L, c), dtype=dtype, device=f.device)
        folded.copy_(f.transpose(1, 2))  # -> [N, L, C]
    return folded.view(n * L, c)


def _iter_corr(
    probe: torch.Tensor,
    gallery: torch.Tensor,
    probe_vis: torch.Tensor | None,
    gallery_vis: torch.Tensor | None,
    *,
    chunk_size: int | None,
    max_chunk_bytes: int | None,
    dtype: torch.dtype | str | None,
    normalize: bool,
    track_grad: bool,
) -> Iterator[tuple[int, int, int, int, torch.Tensor]]:
    """Yield (p0, p1, g0, g1, corr ``[p1-p0, R, S, g1-g0]``) covering all (probe, gallery) pairs.

    ``corr[p, r, s, g] = <v_p[r] f_p[:, r], v_g[s] f_g[:, s]>``, computed on the probe's device
    (gallery chunks are moved there one at a time) in ``dtype`` (None: the inputs' promoted
    dtype). Without ``track_grad`` every corr is a view of one buffer, overwritten by the next
    chunk: reduce it before advancing the iterator.
    """
    device = probe.device
    base = torch.promote_types(probe.dtype, gallery.dtype)
    cdtype = resolve_score_dtype(dtype, device) or base
    num_p, _, h, w = probe.shape
    num_g = gallery.shape[0]
    L = h * w
    pc, gc = plan_chunks(
        num_p, num_g, L, torch.empty((), dtype=cdtype).element_size(),
        chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes, device=device,
    )
    buf = None
    if not track_grad and num_p and num_g:
        buf = torch.empty(pc * L * gc * L, dtype=cdtype, device=device)  # the one correlation buffer
    for p0 in range(0, num_p, pc):
        p1 = min(p0 + pc, num_p)
        pv = None if probe_vis is None else probe_vis[p0:p1].to(device)
        a = _fold(probe[p0:p1].to(base), pv, normalize=normalize, dtype=cdtype, location_major=False)  # [Pc*R, C]
        n_p = p1 - p0
        for g0 in range(0, num_g, gc):
            g1 = min(g0 + gc, num_g)
            n_g = g1 - g0
            gmaps = gallery[g0:g1].to(device=device, dtype=base, non_blocking=True)
            gv = None if gallery_vis is None else gallery_vis[g0:g1].to(device=device, non_blocking=True)
            b = _fold(gmaps, gv, normalize=normalize, dtype=cdtype, location_major=True)  # [S*Gc, C]
            if buf is None:
                corr = torch.mm(a, b.t())  # [Pc*R, S*Gc]
            else:
                corr = torch.mm(a, b.t(), out=buf[: n_p * L * n_g * L].view(n_p * L, n_g * L))
            yield p0, p1, g0, g1, corr.view(n_p, L, L, n_g)  # [Pc, R, S, Gc]


def _pool_into(corr: torch.Tensor, dst: torch.Tensor) -> None:
    """Max pools of corr ``[Pc, R, S, Gc]`` into dst ``[Pc, Gc, R + S]`` (no autograd).

    The reductions write contiguous temporaries (1/S and 1/R of the chunk) that are then copied
    into place: reducing straight into the strided destination is about 2x slower on CPU.
    """
    L = corr.shape[1]
    dst[:, :, :L].copy_(torch.amax(corr, dim=2).transpose(1, 2))  # max over s: [Pc, R, Gc] -> [Pc, Gc, R]
    dst[:, :, L:].copy_(torch.amax(corr, dim=1).transpose(1, 2))  # max over r: [Pc, S, Gc] -> [Pc, Gc, S]


def _pool_grad(corr: torch.Tensor) -> torch.Tensor:
    """Differentiable max pools ``[Pc, R, S, Gc] -> [Pc, Gc, R + S]``; max(dim) saves only argmax
    indices for backward (amax would keep the whole correlation chunk alive)."""
    by_probe = corr.max(dim=2).values  # [Pc, R, Gc]
    by_gallery = corr.max(dim=1).values  # [Pc, S, Gc]
    return torch.cat((by_probe.transpose(1, 2), by_gallery.transpose(1, 2)), dim=2)


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
    track = _needs_grad(probe, gallery, probe_vis, gallery_vis)
    chunks = _iter_corr(
        probe, gallery, probe_vis, gallery_vis, chunk_size=chunk_size, max_chunk_bytes=max_chunk_bytes,
        dtype=dtype, normalize=False, track_grad=track,
    )
    if track:
        rows: dict[int, list[torch.Tensor]] = {}
        for p0, _p1, _g0, _g1, corr in chunks:
            rows.setdefault(p0, []).append(_pool_grad(corr).to(out_dtype))
        if not rows:
            return torch.zeros((num_p, num_g, 2 * L), dtype=out_dtype, device=probe.device)
        return torch.cat([torch.cat(parts, dim=1) for _, parts in sorted(rows.items())], dim=0)
    out = torch.empty((num_p, num_g, 2 * L), dtype=out_dtype, device=probe.device)
    for p0, p1, g0, g1, corr in chunks:
        _pool_into(corr, out[p0:p1, g0:g1])
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
        """The head with running statistics (inference): pooled ``[..., 2L]`` -> ``[...]``."""
        shape = pooled.shape[:-1]
        x = pooled.reshape(-1, 1, 2 * self.locations).to(self.fc.weight.dtype)
        bn, lbn = self.bn, self.logit_bn
        x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        x = F.linear(x.squeeze(1), self.fc.weight, self.fc.bias)  # [N, 1]
        x = F.batch_norm(x, lbn.running_mean, lbn.running_var, lbn.weight, lbn.bias, False, 0.0, lbn.eps)
        return x.reshape(shape)

    @staticmethod
    def untrained_score(pooled: torch.Tensor) -> torch.Tensor:
        """Parameter-free score: the mean of the 2*H*W pooled values, ``[..., 2L] -> [...]``."""
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
        pooled = None
        for p0, p1, g0, g1, corr in _iter_corr(
            probe_maps, gallery_maps, probe_vis, gallery_vis, chunk_size=chunk_size,
            max_chunk_bytes=max_chunk_bytes, dtype=dtype, normalize=True, track_grad=False,
        ):
            if pooled is None:  # [Pc, Gc, 2L], reused for every chunk
                pooled = torch.empty((p1 - p0, g1 - g0, 2 * self.locations), dtype=out.dtype, device=out.device)
            dst = pooled[: p1 - p0, : g1 - g0]
            _pool_into(corr, dst)
            out[p0:p1, g0:g1] = self._head_eval(dst) if use_head else self.untrained_score(dst)
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
