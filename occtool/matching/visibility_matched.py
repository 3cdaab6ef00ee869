"""Visibility-matched embeddings: both faces of a pair read only where both are visible.

The occlusion-aware embedding `embed(fm * v)` weights a face's own feature map by its own
predicted visibility v. A masked probe and a clean gallery face then still describe different
regions: the probe its upper face, the gallery face all of it. Matching instead embeds both
through the *joint* visibility w = v_probe * v_gallery (QAConv's "both must be visible" rule
applied to the global embedding), so each pair compares like with like.

That needs one embedding per pair, which is cheap because the backbone's output layer is affine
in the feature map before its normalisation (MobileFaceNet: depthwise conv + BN + linear + BN;
IR: BN + linear + BN):

    raw(fm * w) = b + sum_l w[l] c[l]     c[l] = raw(fm * onehot_l) - b,  b = raw(0)

so per image the contributions c [L, D] (L = H*W locations) are computed once (from the
layer's Jacobian J [C, L, D], itself computed once per model), and a pair costs two
[L] x [L, D] products. With flip TTA each view (image, mirror) has its own contributions and
visibility; views are stacked along the location axis (VL = V*L) and the bias counted V times.

Visible mass. A map scaled towards zero drifts towards raw(0) = b, the same point for every
face, so two faces sharing little visibility would look alike (at w = 0 every pair scores 1).
As in partial convolutions, w is therefore rescaled per pair and view to the visible mass of the
less visible face, sum_l w' = min(sum_l v_p, sum_l v_g): a no-op when one face is fully visible
(a clean gallery), and the embeddings keep the mass the occlusion-aware embedding was trained
with. A pair with no shared visibility at all (or a face with none) scores 0: no evidence.

Shapes: N images, V views, L = H*W locations, D embedding size; P probes, G gallery images.
"""

from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

from occtool.errors import OcctoolError

# bytes of one [p, g, D] float32 block (two of them live at once; see _block_sizes)
DEFAULT_BLOCK_BYTES = 4 * 2**20
_UNIT = 1024.0  # one-hot value for the Jacobian (see output_layer_jacobian)
MIN_OVERLAP = 1e-3  # shared visible mass (in locations) below which a pair has no evidence
PROBE_CHUNK = 4096  # probes per pass over the gallery: bounds the per-strip [V, P, g] arrays (a few MB)
# Pairs are matched through v**exponent, not v: the head's partial readings (0.3-0.6 at the edges of
# a mask or a pair of glasses) then still let those locations speak. Chosen on validation people
# (docs/experiments.md, issue 12): over 7 trained heads and 9 occluded probe sets, 0.5 scored 94.2%
# rank-1 against 91.5% for 1.0 (masked alone: 94.1% against 94.5%, 1-2 probes of 216).
DEFAULT_VISIBILITY_EXPONENT = 0.5


@torch.inference_mode()
def output_layer_bias(backbone, *, device=None) -> torch.Tensor:
    """b = raw(0) [D]: the output layer's response to an all-zero feature map."""
    c = backbone.feature_channels
    h, w = backbone.feature_size
    dev = device if device is not None else next(backbone.parameters()).device
    return backbone.embed_raw(torch.zeros(1, c, h, w, device=dev)).float()[0]


@torch.inference_mode()
def output_layer_jacobian(backbone, *, device=None, batch_size: int = 512) -> torch.Tensor:
    """J [C, L, D] with raw(fm) = b + sum_{c,l} fm[c, l] J[c, l] for an affine output layer: the
    layer's response to every one-hot feature map (C*L of them, once per model)."""
    c = backbone.feature_channels
    h, w = backbone.feature_size
    n = c * h * w
    dev = device if device is not None else next(backbone.parameters()).device
    b = output_layer_bias(backbone, device=dev)
    rows = []
    for s in range(0, n, batch_size):
        k = min(batch_size, n - s)
        x = torch.zeros((k, n), device=dev)
        # a large one-hot value (a power of two: exact to divide) so that subtracting b, often far
        # larger than one unit's response, does not cancel the response away in float32
        x[torch.arange(k, device=dev), torch.arange(s, s + k, device=dev)] = _UNIT
        rows.append((backbone.embed_raw(x.view(k, c, h, w)).float() - b) / _UNIT)
    return torch.cat(rows).view(c, h * w, -1)


@torch.inference_mode()
def output_layer_contributions(backbone, maps: torch.Tensor, *, jacobian: torch.Tensor | None = None) -> torch.Tensor:
    """maps [N, C, H, W] -> per-location contributions c [N, L, D] (float32, maps' device), with
    raw(fm * w) = b + sum_l w[l] c[:, l] for an affine output layer (see `is_affine`).
    `jacobian`: `output_layer_jacobian(backbone)`, computed once by callers that call this often."""
    J = output_layer_jacobian(backbone, device=maps.device) if jacobian is None else jacobian.to(maps.device)
    if maps.shape[1] != J.shape[0] or maps.shape[2] * maps.shape[3] != J.shape[1]:
        raise OcctoolError(f"maps: expected [N, {J.shape[0]}, H, W] with H*W = {J.shape[1]}, got {tuple(maps.shape)}")
    return torch.einsum("ncl,cld->nld", maps.flatten(2).float(), J)


@torch.inference_mode()
def is_affine(backbone, *, device=None, samples: int = 3, rtol: float = 1e-3) -> bool:
    """Whether raw - b is linear in the feature map: raw(a x + c y) - b == a (raw(x) - b) +
    c (raw(y) - b) on random maps and scalars (fixed seed). Linearity is what makes
    raw(fm * w) = b + sum_l w[l] c[l] hold for every visibility w."""
    g = torch.Generator().manual_seed(0)
    c = backbone.feature_channels
    h, w = backbone.feature_size
    dev = device if device is not None else next(backbone.parameters()).device
    x, y = (torch.randn((samples, c, h, w), generator=g).to(dev) for _ in range(2))
    a, k = (torch.rand((samples, 1, 1, 1), generator=g).to(dev) * 2 - 0.5 for _ in range(2))
    b = output_layer_bias(backbone, device=dev)
    lhs = backbone.embed_raw(a * x + k * y).float() - b
    rhs = a.flatten(1) * (backbone.embed_raw(x).float() - b) + k.flatten(1) * (backbone.embed_raw(y).float() - b)
    return bool((lhs - rhs).abs().max() <= rtol * max(1.0, float(lhs.abs().max())))


def _check(name: str, contrib: torch.Tensor, vis: torch.Tensor, views: int) -> None:
    if contrib.dim() != 3 or vis.dim() != 2 or vis.shape != contrib.shape[:2]:
        raise OcctoolError(f"{name}: expected contributions [N, VL, D] and visibility [N, VL], "
                           f"got {tuple(contrib.shape)} and {tuple(vis.shape)}")
    if vis.shape[1] % views:
        raise OcctoolError(f"{name}: {vis.shape[1]} locations do not split into {views} views")


def matched_weights(vis_p: torch.Tensor, vis_g: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """vis_p [..., VL], vis_g [..., VL] (broadcastable) -> (w' [..., VL], has_overlap [...] bool):
    the joint visibility rescaled per view to the smaller face's visible mass (module doc)."""
    vp = vis_p.float().unflatten(-1, (views, -1))
    vg = vis_g.float().unflatten(-1, (views, -1))
    w = vp * vg  # [..., V, L]
    shared = w.sum(-1, keepdim=True)
    target = torch.minimum(vp.sum(-1, keepdim=True), vg.sum(-1, keepdim=True))
    w = w * (target / shared.clamp_min(MIN_OVERLAP))
    return w.flatten(-2), (shared.squeeze(-1) >= MIN_OVERLAP).all(-1)


def _block_sizes(num_p: int, num_g: int, dim: int, block_bytes: int) -> tuple[int, int]:
    """(p, g) per block: g = 2 p, p * g * dim * 4 bytes <= block_bytes (64 x 128 at 4 MiB, D = 128:
    the best of 32x64 .. 128x128 measured, the gallery side's GEMMs the longer ones)."""
    p = max(1, int((max(1, block_bytes // (8 * dim))) ** 0.5))
    return max(1, min(num_p, p)), max(1, min(num_g, 2 * p))  # >= 1: empty sides give empty scores


def _strip_scales(vp_t, vg_t, mass_p, mass_g) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visibility vp_t [V, p, L], vg_t [V, L, g], visible masses [V, p], [V, g] -> (has_overlap
    [p, g] bool, 1 / s_0 [p, g], s_v / s_0 [V-1, p, g]) with s_v the per-pair rescaling of view v
    (module doc). The joint visibility scaled by s_v / s_0, with the bias weighted 1 / s_0, gives
    each pair's raw embeddings divided by s_0 (> 0 wherever the pair has overlap): the cosine is
    unchanged and view 0 needs no scaling pass. Computed for a whole gallery strip at once
    (vectorised along g: a few ops per strip, not per block); the shared masses are one small
    batched GEMM. Pairs without overlap may get inf here: the caller masks them."""
    shared = torch.bmm(vp_t, vg_t)  # [V, p, g]
    ok = (shared >= MIN_OVERLAP).all(0)
    scale = torch.minimum(mass_p[:, :, None], mass_g[:, None]).div_(shared.clamp_min_(MIN_OVERLAP))
    s0 = scale[0].clamp_min_(1e-30)
    return ok, torch.reciprocal(s0), scale[1:].div_(s0)


def _bias_terms(vp_t, vg_t, beta_p_t, beta_g_t, ratio) -> tuple[torch.Tensor, torch.Tensor]:
    """<x_p, B> and <x_g, B> per pair [p, g], x the raw embeddings without the bias (in units of
    s_0, see `_strip_scales`): x_p = sum_l w[l] cp[l] with w = v_p v_g (s_v / s_0) per view, so
    <x_p, B> = sum_v (s_v / s_0) sum_l v_g[l] (v_p[l] beta_p[l]) with beta = c B per location:
    one small batched GEMM per side over the views ([V, p, L] x [V, L, g]), not a pass per pair.
    beta_p_t [V, p, L] = vp_t * (cp B), beta_g_t [V, L, g] = vg_t * (cg B)."""
    a_p, a_g = torch.bmm(beta_p_t, vg_t), torch.bmm(vp_t, beta_g_t)  # [V, p, g]
    for v in range(1, a_p.shape[0]):
        a_p[0].addcmul_(a_p[v], ratio[v - 1])
        a_g[0].addcmul_(a_g[v], ratio[v - 1])
    return a_p[0], a_g[0]


def _write_weights(w, vp_f, vg_f, ratio, *, locs: int) -> None:
    """w [p, g, VL] <- per pair: v_p * v_g, view v scaled by ratio[v-1] [p, g] (view 0 by 1, see
    `_strip_scales`); vp_f [p, VL], vg_f [g, VL]. One pass per op over contiguous runs of L (a
    [p, g, V, 1] broadcast scale is 5x slower)."""
    torch.mul(vp_f[:, None], vg_f[None], out=w)
    for v in range(1, vp_f.shape[1] // locs):
        w[..., v * locs: (v + 1) * locs].mul_(ratio[v - 1, :, :, None])


def _matched_scores(cp, cg, vp, vg, *, bias, views: int, block_bytes: int, fused: bool | None = None) -> torch.Tensor:
    """contributions cp [P, VL, D], cg [G, VL, D], visibility vp [P, VL], vg [G, VL] -> [P, G].

    Per pair, with w the joint visibility scaled by s_v / s_0 (`_strip_scales`: the raw
    embeddings divided by s_0, which leaves the cosine unchanged), x = sum_l w[l] c[l] and
    raw = x + B / s_0 (B = V b). Per block of p probes x g gallery images: w [p, g, VL], then x_p
    (p products [g, VL] x [VL, D]) and x_g (g products [p, VL] x [VL, D]) straight from the
    contributions (no padded copy: the GEMMs run as fast at depth VL = 98 as at 104 here) into
    buffers reused by every block, then three reductions over D. The bias enters through
    |raw|^2 = |x|^2 + 2 <x, B> / s_0 + |B|^2 / s_0^2 and <raw_p, raw_g> = <x_p, x_g> +
    (<x_p, B> + <x_g, B>) / s_0 + |B|^2 / s_0^2, the <x, B> of a whole gallery strip from two
    small GEMMs (`_bias_terms`). With several torch threads on the CPU, the gallery strips are
    shared out between that many Python threads, each running its strips single-threaded (the
    blocks' ops are too small for intra-op threads, which stall each other on a busy machine);
    the scores are the same.

    On the CPU with numba installed (`fused` None: whenever it can; False: the eager ops), the
    weights and each pair's cosine are fused kernels (`kernels`): one pass for the weights and one
    over the two GEMM outputs per block, the bias added in the kernel (no bias terms per strip)."""
    from occtool.matching import kernels
    from occtool.runtime import torch_threads

    num_p, num_g, dim = cp.shape[0], cg.shape[0], cp.shape[2]
    bp, bg = _block_sizes(num_p, num_g, dim, block_bytes)
    starts = list(range(0, num_g, bg))
    workers = min(torch.get_num_threads(), len(starts)) if cp.device.type == "cpu" else 1
    out = torch.empty((num_p, num_g), device=cp.device)
    bias = bias.float()
    cp, cg = cp.float().contiguous(), cg.float().contiguous()  # no-ops for float32 contributions
    vp, vg = vp.float().contiguous(), vg.float().contiguous()
    vpv, vgv = vp.unflatten(1, (views, -1)), vg.unflatten(1, (views, -1))  # [N, V, L]
    kern = kernels.load() if fused is not False and cp.device.type == "cpu" else None
    if fused and kern is None:
        raise OcctoolError("fused matched scoring needs numba and CPU tensors")
    score_blocks = functools.partial(_score_blocks_fused, kern) if kern is not None else _score_blocks

    def run(share, c, d, probes, gallery):
        # thread-local, so each worker sets both itself: inference mode, and one intra-op thread (a new
        # thread's OpenMP and MKL thread counts are the process defaults, not the caller's)
        with torch.inference_mode(), torch_threads(1) if workers > 1 else contextlib.nullcontext():
            score_blocks(out[c:d], share, bp, bg, bias=bias, **probes, **gallery)

    # with workers, every op single-threaded (the shared terms too: scores equal one thread's)
    with torch_threads(1) if workers > 1 else contextlib.nullcontext():
        vg_t = vgv.permute(1, 2, 0).contiguous()  # [V, L, G]: once for every probe chunk and worker
        gallery = dict(cg=cg, vg=vg, vg_t=vg_t, mass_g_t=vg_t.sum(1))  # [V, G] visible masses
        for c in range(0, num_p, PROBE_CHUNK):  # bounds the per-strip [V, P, g] arrays
            d = min(num_p, c + PROBE_CHUNK)
            vp_t = vpv[c:d].transpose(0, 1).contiguous()  # [V, p, L]
            probes = dict(cp=cp[c:d], vp=vp[c:d], vp_t=vp_t, mass_p_t=vp_t.sum(-1))  # [V, p]
            if kern is None:  # the eager path's bias terms: v_p (cp B)
                probes["beta_p_t"] = vp_t * (cp[c:d] @ bias).T.unflatten(0, (views, -1)).transpose(1, 2)
            if workers <= 1:
                run(starts, c, d, probes, gallery)
                continue
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda share: run(share, c, d, probes, gallery), [starts[i::workers] for i in range(workers)]))
    return out


def _score_blocks(out, starts, bp: int, bg: int, *, cp, cg, vp, vg, vp_t, vg_t, mass_p_t, mass_g_t, beta_p_t,
                  bias) -> None:
    """Fill out[:, t:t+bg] for the gallery strips starting at `starts`; the transposed visibilities
    vp_t [V, P, L], vg_t [V, L, G], their masses and beta_p_t = v_p (cp B) [V, P, L] are made
    once by the caller (see `_matched_scores`)."""
    num_p, num_g, vl, dim = cp.shape[0], cg.shape[0], cp.shape[1], cp.shape[2]
    dev = cp.device
    side = dict(cp=cp, cg=cg, vp_f=vp, vg_f=vg, locs=vp_t.shape[2],
                w_buf=torch.empty(bp * bg * vl, device=dev),
                x_bufs=(torch.empty(bp * bg * dim, device=dev), torch.empty(bp * bg * dim, device=dev)),
                sums=[torch.empty(num_p * bg, device=dev) for _ in range(3)])
    sq_bias = bias.square().sum()
    for t in starts:
        u = min(num_g, t + bg)
        ok, inv_s0, ratio = _strip_scales(vp_t, vg_t[:, :, t:u], mass_p_t, mass_g_t[:, t:u])
        beta_g_t = vg_t[:, :, t:u] * (cg[t:u] @ bias).T.unflatten(0, vg_t.shape[:2])  # [V, L, g]
        a_p, a_g = _bias_terms(vp_t, vg_t[:, :, t:u], beta_p_t, beta_g_t, ratio)
        dot, sq_p, sq_g = _score_strip(t, u, bp, ratio=ratio, **side)
        e = inv_s0.square().mul_(sq_bias)  # |B|^2 / s_0^2
        sq_p.square_().addcmul_(a_p, inv_s0, value=2.0).add_(e)
        sq_g = sq_g.T.square_().addcmul_(a_g, inv_s0, value=2.0).add_(e)
        dot.addcmul_(a_p.add_(a_g), inv_s0).add_(e)
        cos = dot.div_(sq_p.mul_(sq_g).sqrt_().clamp_min_(1e-12))
        torch.where(ok, cos, torch.zeros((), device=dev), out=out[:, t:u])  # NaN-safe: no-overlap pairs may hold inf


def _score_blocks_fused(kern, out, starts, bp: int, bg: int, *, cp, cg, vp, vg, vp_t, vg_t, mass_p_t, mass_g_t,
                        bias) -> None:
    """`_score_blocks` with the fused kernels: per strip the scales; per block the weights (one
    kernel), the two GEMMs into reused buffers, and every pair's cosine (one kernel reading both
    GEMM outputs once, the bias B / s_0 added there) written straight into `out`."""
    num_p, vl, dim = cp.shape[0], cp.shape[1], cp.shape[2]
    w_buf = torch.empty(bp * bg * vl)
    x_bufs = (torch.empty(bp * bg * dim), torch.empty(bp * bg * dim))
    out_n, vp_n, vg_n, bias_n = out.numpy(), vp.numpy(), vg.numpy(), bias.contiguous().numpy()
    for t in starts:
        u = min(vg.shape[0], t + bg)
        n_g = u - t
        ok, inv_s0, ratio = _strip_scales(vp_t, vg_t[:, :, t:u], mass_p_t, mass_g_t[:, t:u])
        ok_n, inv_n, ratio_n = ok.numpy(), inv_s0.contiguous().numpy(), ratio.contiguous().numpy()
        for s in range(0, num_p, bp):
            n_p = min(num_p, s + bp) - s
            w = w_buf[: n_p * n_g * vl].view(n_p, n_g, vl)
            kern.write_weights(w.numpy(), vp_n, vg_n[t:u], ratio_n, s, vp_t.shape[2])
            x_p = torch.bmm(w, cp[s:s + n_p], out=x_bufs[0][: n_p * n_g * dim].view(n_p, n_g, dim))
            x_g = torch.bmm(w.transpose(0, 1), cg[t:u], out=x_bufs[1][: n_p * n_g * dim].view(n_g, n_p, dim))
            kern.block_cosines(x_p.numpy(), x_g.numpy(), bias_n, inv_n, ok_n, out_n[:, t:u], s)


def _score_strip(t, u, bp, *, cp, cg, vp_f, vg_f, ratio, locs, w_buf, x_bufs, sums):
    """All probes x the gallery images t:u, in blocks of bp probes -> (<x_p, x_g> [P, g], |x_p|
    [P, g], |x_g| [g, P]). Per block: the weights w [p, g, VL] (2 ops), x_p and x_g (two batched
    GEMMs into reused buffers), each reduced while it is hot (the norm right after its GEMM),
    then the dot; the reductions write straight into the strip's sums: 7 ops per block, so that
    cache-sized blocks do not drown in per-op overhead."""
    num_p, vl, dim = cp.shape[0], cp.shape[1], cp.shape[2]
    n_g = u - t
    dot, norm_p = (b[: num_p * n_g].view(num_p, n_g) for b in sums[:2])
    norm_g = sums[2][: num_p * n_g].view(n_g, num_p)  # gallery-major: x_g's own layout
    for s in range(0, num_p, bp):
        e = min(num_p, s + bp)
        n_p = e - s
        w = w_buf[: n_p * n_g * vl].view(n_p, n_g, vl)
        _write_weights(w, vp_f[s:e], vg_f[t:u], ratio[:, s:e], locs=locs)
        x_p = torch.bmm(w, cp[s:e], out=x_bufs[0][: n_p * n_g * dim].view(n_p, n_g, dim))
        torch.linalg.vector_norm(x_p, dim=-1, out=norm_p[s:e])
        x_g = torch.bmm(w.transpose(0, 1), cg[t:u], out=x_bufs[1][: n_p * n_g * dim].view(n_g, n_p, dim))
        torch.linalg.vector_norm(x_g, dim=-1, out=norm_g[:, s:e])
        torch.sum(x_p.mul_(x_g.transpose(0, 1)), -1, out=dot[s:e])
    return dot, norm_p, norm_g


def powered_visibility(vis: torch.Tensor, exponent: float) -> torch.Tensor:
    """Predicted visibility [..., VL] -> what a pair is matched through, v**exponent (float32,
    in [0, 1]; exponent 1: v itself)."""
    vis = vis.float().clamp(0.0, 1.0)
    return vis if exponent == 1.0 else vis.pow(exponent)


class VisibilityMatchedScorer:
    """Cosine of visibility-matched embeddings, for every (probe, gallery) pair.

    `score(probe_contrib [P, VL, D], gallery_contrib [G, VL, D], probe_vis [P, VL],
    gallery_vis [G, VL]) -> [P, G]` with w = a_p * a_g per view and location, a = vis**
    `visibility_exponent` (1: the visibilities themselves), rescaled to the smaller visible mass
    (`matched_weights`):

        raw_p = V b + sum_l w[l] cp[l],   raw_g = V b + sum_l w[l] cg[l],   score = cos(raw_p, raw_g)

    and 0 where a pair shares no visibility. All-ones visibility gives the plain (flip-summed)
    embedding's cosine.

    Computed in blocks of probes x gallery (`_matched_scores`): the [p, g, D] intermediates of a
    block stay within `chunk_bytes`, both sides' embeddings are batched GEMMs over the VL
    locations; on the CPU the pair weights and each pair's cosine are fused numba kernels
    (`kernels`), elsewhere (or without numba) eager ops, the bias through the cosine's algebra.
    """

    def __init__(self, *, bias: torch.Tensor, views: int, visibility_exponent: float = 1.0,
                 chunk_bytes: int = DEFAULT_BLOCK_BYTES):
        if views < 1:
            raise OcctoolError(f"views must be >= 1, got {views}")
        if not visibility_exponent > 0:
            raise OcctoolError(f"visibility_exponent must be > 0, got {visibility_exponent}")
        self.bias = bias.float()
        self.views = int(views)
        self.visibility_exponent = float(visibility_exponent)
        self.chunk_bytes = int(chunk_bytes)

    def _weights(self, vis: torch.Tensor) -> torch.Tensor:
        return powered_visibility(vis, self.visibility_exponent)

    def to(self, device):  # the scorer protocol of occtool.evaluation.scoring
        self.bias = self.bias.to(device)
        return self

    def eval(self):
        return self

    @torch.inference_mode()
    def score(self, probe_contrib, gallery_contrib, probe_vis=None, gallery_vis=None) -> torch.Tensor:
        if probe_vis is None or gallery_vis is None:
            raise OcctoolError("visibility-matched scores need the visibility of both sides")
        _check("probe", probe_contrib, probe_vis, self.views)
        _check("gallery", gallery_contrib, gallery_vis, self.views)
        num_p, num_g, dim = probe_contrib.shape[0], gallery_contrib.shape[0], probe_contrib.shape[2]
        if gallery_contrib.shape[1:] != probe_contrib.shape[1:] or dim != self.bias.numel():
            raise OcctoolError(f"probe {tuple(probe_contrib.shape[1:])} and gallery {tuple(gallery_contrib.shape[1:])} "
                               f"contributions and bias [{self.bias.numel()}] disagree")
        return _matched_scores(probe_contrib, gallery_contrib, self._weights(probe_vis), self._weights(gallery_vis),
                               bias=self.views * self.bias.to(probe_contrib.device), views=self.views,
                               block_bytes=self.chunk_bytes)

    @torch.inference_mode()
    def pair_scores(self, contrib_a, contrib_b, vis_a, vis_b) -> torch.Tensor:
        """Aligned pairs: row i of a against row i of b -> [N]."""
        _check("a", contrib_a, vis_a, self.views)
        _check("b", contrib_b, vis_b, self.views)
        if contrib_a.shape != contrib_b.shape:
            raise OcctoolError(f"pair contributions differ in shape: {tuple(contrib_a.shape)} vs {tuple(contrib_b.shape)}")
        bias = self.views * self.bias.to(contrib_a.device)
        w, ok = matched_weights(self._weights(vis_a), self._weights(vis_b), self.views)  # [N, VL], [N]
        raw_a = torch.einsum("nl,nld->nd", w, contrib_a.float()) + bias
        raw_b = torch.einsum("nl,nld->nd", w, contrib_b.float()) + bias
        return F.cosine_similarity(raw_a, raw_b, dim=-1, eps=1e-12) * ok


__all__ = [
    "DEFAULT_VISIBILITY_EXPONENT",
    "VisibilityMatchedScorer",
    "is_affine",
    "matched_weights",
    "powered_visibility",
    "output_layer_bias",
    "output_layer_contributions",
    "output_layer_jacobian",
]
