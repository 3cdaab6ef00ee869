"""Why two faces match: QAConv's location correspondences and the per-location contributions
of the visibility-matched cosine score (torch, no autograd).

QAConv. With per-location L2-normalised matching features f_p[:, r], f_g[:, s] (`normalize_locations`)
the correlation is S[r, s] = <f_p[:, r], f_g[:, s]> and the occlusion-weighted one
S_w[r, s] = S[r, s] * v_p[r] * v_g[s] (`occtool.matching.qaconv`). QAConv pools, for every probe
location r, its best gallery location s*(r) = argmax_s S_w[r, s]; the correspondences drawn are
the k probe locations with the highest pooled value max_s S_w[r, s], each with its s*(r). Without
visibility (v = 1) the same gives plain QAConv's correspondences.

Visibility-matched cosine. With the joint weights w (`matched_weights`: v_p * v_g per view and
location, rescaled to the smaller visible mass) and per-location output-layer contributions
c_p[l], c_g[l] and bias b (V views, `occtool.matching.visibility_matched`):

    raw_p = V b + sum_l w[l] c_p[l],  raw_g = V b + sum_l w[l] c_g[l],
    score = <raw_p, raw_g> / (|raw_p| |raw_g|)

The numerator is split symmetrically between the two faces' expansions:
<raw_p, raw_g> = 1/2 <raw_p - V b, raw_g> + 1/2 <raw_p, raw_g - V b> + 1/2 <V b, raw_g> + 1/2 <raw_p, V b>,
so location l's share is

    contribution[l] = w[l] (<c_p[l], raw_g> + <raw_p, c_g[l]>) / (2 |raw_p| |raw_g|)

and the bias's share is (<V b, raw_g> + <raw_p, V b>) / (2 |raw_p| |raw_g|); the shares sum to the
score exactly. A positive share is a location that pulls the two embeddings together. The mirror
view's locations are folded back onto the face (column W-1-x of the mirror is column x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from occtool.errors import ShapeError


@dataclass
class Correspondences:
    similarity: np.ndarray  # [R, S] correlation used (weighted when visibility was given)
    best_gallery: np.ndarray  # [R] s*(r) = argmax_s similarity[r, s]
    probe_loc: np.ndarray  # [k] probe locations r (row-major index into the H x W map), best first
    gallery_loc: np.ndarray  # [k] their gallery locations s*(r)
    scores: np.ndarray  # [k] similarity[r, s*(r)]
    size_hw: tuple[int, int]


def _check_map(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ShapeError(f"{name}: expected a tensor [C, H, W], got {getattr(x, 'shape', type(x).__name__)}")


@torch.inference_mode()
def location_similarity(map_p: torch.Tensor, map_g: torch.Tensor, vis_p=None, vis_g=None) -> torch.Tensor:
    """S_w [R, S] for one pair: map_p, map_g [C, H, W] matching features; vis_p, vis_g [H, W] or
    None (no weighting)."""
    from occtool.matching import normalize_locations

    _check_map("probe map", map_p)
    _check_map("gallery map", map_g)
    if map_p.shape != map_g.shape:
        raise ShapeError(f"probe and gallery maps differ: {tuple(map_p.shape)} vs {tuple(map_g.shape)}")
    c, h, w = map_p.shape
    fp = normalize_locations(map_p[None].float())[0].reshape(c, h * w)
    fg = normalize_locations(map_g[None].float())[0].reshape(c, h * w)
    sim = fp.T @ fg  # [R, S]
    for name, vis, axis in (("probe", vis_p, 0), ("gallery", vis_g, 1)):
        if vis is None:
            continue
        v = torch.as_tensor(vis, dtype=torch.float32)
        if v.numel() != h * w:
            raise ShapeError(f"{name} visibility: expected {h}x{w} values, got {tuple(v.shape)}")
        sim = sim * (v.reshape(-1, 1) if axis == 0 else v.reshape(1, -1))
    return sim


def top_correspondences(sim: torch.Tensor, k: int, size_hw: tuple[int, int]) -> Correspondences:
    """The k probe locations with the highest max_s sim[r, s], best first (ties: lower r first)."""
    best, arg = sim.max(dim=1)
    k = max(0, min(int(k), sim.shape[0]))
    order = np.argsort(-best.numpy(), kind="stable")[:k]
    return Correspondences(similarity=sim.numpy(), best_gallery=arg.numpy(), probe_loc=order,
                           gallery_loc=arg.numpy()[order], scores=best.numpy()[order], size_hw=tuple(size_hw))


def qaconv_correspondences(map_p, map_g, vis_p=None, vis_g=None, *, k: int = 10) -> Correspondences:
    """Top-k QAConv correspondences of one pair (module doc); vis None: unweighted."""
    sim = location_similarity(map_p, map_g, vis_p, vis_g)
    return top_correspondences(sim, k, tuple(map_p.shape[1:]))


@dataclass
class MatchedBreakdown:
    score: float  # the visibility-matched cosine score
    joint: np.ndarray  # [V, H, W] v_p * v_g per view (before the mass rescaling)
    weights: np.ndarray  # [V, H, W] w: the rescaled joint weights actually used
    per_view: np.ndarray  # [V, H, W] contribution of each view's locations
    per_location: np.ndarray  # [H, W] views folded onto the face (mirror columns flipped back)
    bias_share: float  # the output-layer bias's share; per_view.sum() + bias_share == score
    overlap: bool  # False: the faces share no visibility (score 0, no contributions)


@torch.inference_mode()
def matched_contributions(contrib_p, contrib_g, vis_p, vis_g, *, bias, views: int,
                          size_hw: tuple[int, int], visibility_exponent: float = 1.0) -> MatchedBreakdown:
    """Decompose one pair's visibility-matched score into per-location shares (module doc).

    contrib_p, contrib_g [V*L, D]; vis_p, vis_g [V*L] (views stacked: image, then mirror);
    bias [D]; size_hw = (H, W) with H*W = L; the pair is matched through vis**visibility_exponent."""
    from occtool.matching.visibility_matched import matched_weights, powered_visibility

    cp, cg = torch.as_tensor(np.asarray(contrib_p)).float(), torch.as_tensor(np.asarray(contrib_g)).float()
    vp, vg = torch.as_tensor(np.asarray(vis_p)).float(), torch.as_tensor(np.asarray(vis_g)).float()
    h, w = size_hw
    if cp.shape != cg.shape or cp.dim() != 2 or cp.shape[0] != views * h * w or vp.shape != (cp.shape[0],) \
            or vg.shape != vp.shape:
        raise ShapeError(f"expected contributions [{views * h * w}, D] and visibility [{views * h * w}], got "
                         f"{tuple(cp.shape)}, {tuple(cg.shape)}, {tuple(vp.shape)}, {tuple(vg.shape)}")
    wt, ok = matched_weights(powered_visibility(vp, visibility_exponent), powered_visibility(vg, visibility_exponent),
                             views)  # [VL], []
    vb = views * torch.as_tensor(bias).float()
    raw_p, raw_g = vb + wt @ cp, vb + wt @ cg
    denom = (torch.linalg.vector_norm(raw_p) * torch.linalg.vector_norm(raw_g)).clamp_min(1e-12)
    shares = wt * (cp @ raw_g + cg @ raw_p) / (2 * denom) * ok
    bias_share = float((vb @ raw_g + raw_p @ vb) / (2 * denom) * ok)
    per_view = shares.reshape(views, h, w).numpy()
    folded = per_view[0].copy()
    for v in range(1, views):
        folded += per_view[v][:, ::-1]  # the mirror's column W-1-x is the face's column x
    return MatchedBreakdown(
        score=float(F.cosine_similarity(raw_p, raw_g, dim=0, eps=1e-12) * ok),
        joint=(vp * vg).reshape(views, h, w).numpy(), weights=wt.reshape(views, h, w).numpy(),
        per_view=per_view, per_location=folded, bias_share=bias_share, overlap=bool(ok),
    )
