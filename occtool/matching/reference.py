"""Reference formulations of occlusion-weighted QAConv pooling, for tests and benchmarks only.

Both return the same ``[P, G, R + S]`` as `occtool.matching.qaconv_max_scores` but are
deliberately naive; never use them for real galleries.
"""

from __future__ import annotations

import torch

__all__ = ["qaconv_naive_scores"]


def qaconv_naive_scores(
    probe: torch.Tensor,
    gallery: torch.Tensor,
    probe_vis: torch.Tensor | None = None,
    gallery_vis: torch.Tensor | None = None,
) -> torch.Tensor:
    """The formula of the original design notes, materialised:

    ``S = einsum(probe, gallery)`` ``[P, G, R, S]``, ``weight[p,g,r,s] = v_p[r] * v_g[s]``
    ``[P, G, R, S]``, ``S_w = S * weight``, then max over s and max over r.

    Memory: three ``[P, G, R, S]`` tensors (100 probes x 20,000 gallery x 49 x 49 float32 is
    19 GB each).
    """
    num_p, c, h, w = probe.shape
    num_g = gallery.shape[0]
    L = h * w
    f_p = probe.reshape(num_p, c, L)
    f_g = gallery.reshape(num_g, c, L)
    corr = torch.einsum("pcr,gcs->pgrs", f_p, f_g)  # [P, G, R, S]
    if probe_vis is None:
        probe_vis = torch.ones((num_p, 1, h, w), dtype=probe.dtype, device=probe.device)
    if gallery_vis is None:
        gallery_vis = torch.ones((num_g, 1, h, w), dtype=gallery.dtype, device=gallery.device)
    v_p = probe_vis.reshape(num_p, 1, L, 1)
    v_g = gallery_vis.reshape(1, num_g, 1, L)
    weight = v_p * v_g  # [P, G, R, S], materialised
    weighted = corr * weight
    return torch.cat((weighted.amax(dim=3), weighted.amax(dim=2)), dim=2)
