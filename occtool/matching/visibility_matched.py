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

import torch
import torch.nn.functional as F

from occtool.errors import OcctoolError

# bytes of the [p, g, D] intermediates per scoring chunk (two of them live at once)
DEFAULT_CHUNK_BYTES = 256 * 2**20
_UNIT = 1024.0  # one-hot value for the Jacobian (see output_layer_jacobian)
MIN_OVERLAP = 1e-3  # shared visible mass (in locations) below which a pair has no evidence


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


class VisibilityMatchedScorer:
    """Cosine of visibility-matched embeddings, for every (probe, gallery) pair.

    `score(probe_contrib [P, VL, D], gallery_contrib [G, VL, D], probe_vis [P, VL],
    gallery_vis [G, VL]) -> [P, G]` with w = probe_vis * gallery_vis per view and location,
    rescaled to the smaller visible mass (`matched_weights`):

        raw_p = V b + sum_l w[l] cp[l],   raw_g = V b + sum_l w[l] cg[l],   score = cos(raw_p, raw_g)

    and 0 where a pair shares no visibility. All-ones visibility gives the plain (flip-summed)
    embedding's cosine. Probes are scored in chunks so that the [p, G, D] intermediates stay
    under `chunk_bytes`.
    """

    def __init__(self, *, bias: torch.Tensor, views: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        if views < 1:
            raise OcctoolError(f"views must be >= 1, got {views}")
        self.bias = bias.float()
        self.views = int(views)
        self.chunk_bytes = int(chunk_bytes)

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
        bias = self.views * self.bias.to(probe_contrib.device)
        cg = gallery_contrib.float()
        step = max(1, self.chunk_bytes // max(1, 2 * num_g * dim * 4))
        out = []
        for s in range(0, num_p, step):
            cp = probe_contrib[s : s + step].float()
            w, ok = matched_weights(probe_vis[s : s + step, None, :], gallery_vis[None], self.views)  # [p, G, VL]
            raw_p = torch.bmm(w, cp) + bias  # [p, G, D]: batched over probes
            raw_g = torch.bmm(w.transpose(0, 1), cg).transpose(0, 1) + bias  # [p, G, D]: batched over gallery
            out.append(F.cosine_similarity(raw_p, raw_g, dim=-1, eps=1e-12) * ok)
        return torch.cat(out) if out else torch.zeros((0, num_g), device=probe_contrib.device)

    @torch.inference_mode()
    def pair_scores(self, contrib_a, contrib_b, vis_a, vis_b) -> torch.Tensor:
        """Aligned pairs: row i of a against row i of b -> [N]."""
        _check("a", contrib_a, vis_a, self.views)
        _check("b", contrib_b, vis_b, self.views)
        if contrib_a.shape != contrib_b.shape:
            raise OcctoolError(f"pair contributions differ in shape: {tuple(contrib_a.shape)} vs {tuple(contrib_b.shape)}")
        bias = self.views * self.bias.to(contrib_a.device)
        w, ok = matched_weights(vis_a, vis_b, self.views)  # [N, VL], [N]
        raw_a = torch.einsum("nl,nld->nd", w, contrib_a.float()) + bias
        raw_b = torch.einsum("nl,nld->nd", w, contrib_b.float()) + bias
        return F.cosine_similarity(raw_a, raw_b, dim=-1, eps=1e-12) * ok


__all__ = [
    "VisibilityMatchedScorer",
    "is_affine",
    "matched_weights",
    "output_layer_bias",
    "output_layer_contributions",
    "output_layer_jacobian",
]
