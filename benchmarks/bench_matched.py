"""Visibility-matched embedding (`cosine_occ_matched`) scoring cost, side by side in one run.

For P probes x G gallery images (MobileFaceNet sizes: 512x7x7 maps, D = 128, flip: VL = 98),
on the same random inputs:
- ``cosine_occ``: one [P, D] x [D, G] product (each face's own occlusion-aware embedding);
- ``matched``: `VisibilityMatchedScorer.score` on precomputed contributions;
- ``naive``: the obvious way, the output layer run on fm * w for every pair and view (timed on
  a few probes, rate per pair);
- ``qaconv_occ``: `QAConvMatcher.score` with visibilities on 128-channel neck maps.
Prints pairs/s and the ratios (matched vs naive, vs QAConv, vs cosine), the one-off cost of the
contributions per image, and the largest difference from the naive scores; and the machine's
limit beside it: matched's GFLOP/s, counting only what the math needs: 4 * VL * D flops per pair
(two [VL] x [VL, D] products, 2 VL D multiply-adds; the pair weights, the bias terms and the
cosine's reductions are not counted) against a measured fp32 GEMM ([1024, 1024] x [1024, 1024],
timed in the same rounds, interleaved with matched, so that both see the same load); also the
same ratio in CPU seconds of this process (with --threads 1 what a shared machine's load does
not distort as much: descheduled time counts for neither side).

    .venv/bin/python benchmarks/bench_matched.py [--probes 256 --gallery 2048 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F


def _best(fn, rounds: int, clock=time.perf_counter) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def _naive(bb, maps_p, vis_p, maps_g, vis_g, views: int) -> torch.Tensor:
    """[p, V, C, H, W] maps, [p, V*L] visibility -> [p, G] by running the output layer per pair."""
    from occtool.matching.visibility_matched import matched_weights

    out = torch.zeros(len(maps_p), len(maps_g))
    h, w = maps_p.shape[-2:]
    for i in range(len(maps_p)):
        wt, ok = matched_weights(vis_p[i][None], vis_g, views)  # [G, V*L]
        wt = wt.view(len(maps_g), views, 1, h, w)
        rp = sum(bb.embed_raw(maps_p[i, v][None] * wt[:, v]) for v in range(views))
        rg = sum(bb.embed_raw(maps_g[:, v] * wt[:, v]) for v in range(views))
        out[i] = F.cosine_similarity(rp, rg, dim=-1) * ok
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probes", type=int, default=256)
    ap.add_argument("--gallery", type=int, default=2048)
    ap.add_argument("--naive-probes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from occtool.matching import QAConvMatcher
    from occtool.matching.visibility_matched import (
        VisibilityMatchedScorer,
        output_layer_bias,
        output_layer_contributions,
        output_layer_jacobian,
    )
    from occtool.models import build_backbone

    torch.manual_seed(0)
    bb = build_backbone("mobilefacenet").eval()
    with torch.no_grad():  # non-trivial BN statistics (a random network's are identity)
        for m in bb.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    c, (h, w), d, views = bb.feature_channels, bb.feature_size, bb.embedding_dim, 2
    P, G = args.probes, args.gallery
    g = torch.Generator().manual_seed(1)
    maps_p = torch.randn((P, views, c, h, w), generator=g)
    maps_g = torch.randn((G, views, c, h, w), generator=g)
    vis_p = torch.rand((P, views * h * w), generator=g)
    vis_p.view(P, views, h, w)[:, :, 4:] = 0.0  # lower face hidden on the probes
    vis_g = torch.rand((G, views * h * w), generator=g).clamp_min(0.8)

    res: dict = {"P": P, "G": G, "D": d, "VL": views * h * w, "threads": args.threads}
    with torch.inference_mode():
        t0 = time.perf_counter()
        jac = output_layer_jacobian(bb)
        res["jacobian_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cont_g = torch.cat([output_layer_contributions(bb, maps_g[:, v], jacobian=jac) for v in range(views)], dim=1)
        res["contributions_ms_per_image"] = 1e3 * (time.perf_counter() - t0) / G
        cont_p = torch.cat([output_layer_contributions(bb, maps_p[:, v], jacobian=jac) for v in range(views)], dim=1)
        scorer = VisibilityMatchedScorer(bias=output_layer_bias(bb), views=views)
        emb_p = F.normalize(torch.randn(P, d, generator=g), dim=1)
        emb_g = F.normalize(torch.randn(G, d, generator=g), dim=1)
        matcher = QAConvMatcher(num_features=128, height=h, width=w).eval()
        neck_p = torch.randn((P, 128, h, w), generator=g)
        neck_g = torch.randn((G, 128, h, w), generator=g)
        qa_vis_p = vis_p.view(P, views, 1, h, w)[:, 0]
        qa_vis_g = vis_g.view(G, views, 1, h, w)[:, 0]

        ga, gb = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
        gemm_s, matched_s, gemm_cpu, matched_cpu = [], [], [], []
        for _ in range(args.rounds):  # interleaved: GEMM and matched under the same load
            gemm_s.append(_best(lambda: ga @ gb, 3))
            matched_s.append(_best(lambda: scorer.score(cont_p, cont_g, vis_p, vis_g), 1))
            gemm_cpu.append(_best(lambda: ga @ gb, 3, time.process_time))
            matched_cpu.append(_best(lambda: scorer.score(cont_p, cont_g, vis_p, vis_g), 1, time.process_time))
        t = {
            "cosine_occ": _best(lambda: emb_p @ emb_g.T, args.rounds),
            "matched": min(matched_s),
            "qaconv_occ": _best(lambda: matcher.score(neck_p, neck_g, qa_vis_p, qa_vis_g), 1),
        }
        k = min(args.naive_probes, P)
        t0 = time.perf_counter()
        ref = _naive(bb, maps_p[:k], vis_p[:k], maps_g, vis_g, views)
        t["naive"] = (time.perf_counter() - t0) * P / k  # extrapolated to all P probes
        diff = float((scorer.score(cont_p[:k], cont_g, vis_p[:k], vis_g) - ref).abs().max())

    pairs = P * G
    res["pairs_per_s"] = {name: pairs / s for name, s in t.items()}
    res["matched_vs_naive"] = t["naive"] / t["matched"]
    res["matched_vs_qaconv_occ"] = t["qaconv_occ"] / t["matched"]
    res["matched_vs_cosine_occ"] = t["cosine_occ"] / t["matched"]
    res["max_abs_diff_vs_naive"] = diff
    res["gemm_fp32_gflops"] = 2 * 1024**3 / min(gemm_s) / 1e9
    res["matched_gflops"] = pairs * 4 * views * h * w * d / t["matched"] / 1e9
    res["matched_vs_gemm"] = res["matched_gflops"] / res["gemm_fp32_gflops"]
    # the same ratio in CPU seconds: time the process was descheduled (a shared machine) does not
    # count against either side (a long run is interrupted more often than a 13 ms GEMM)
    res["matched_vs_gemm_cpu_time"] = min(gemm_cpu) / (2 * 1024**3) * (pairs * 4 * views * h * w * d) / min(matched_cpu)
    res["load"] = os.getloadavg()[0]
    print(f"== visibility-matched scoring: P={P} G={G} D={d} VL={views * h * w}, {args.threads} thread(s)")
    for name, rate in res["pairs_per_s"].items():
        print(f"   {name:<11} {rate:14,.0f} pairs/s")
    print(f"   matched is {res['matched_vs_naive']:.0f}x faster than the naive per-pair output layer, "
          f"{res['matched_vs_qaconv_occ']:.1f}x the speed of qaconv_occ, "
          f"{res['matched_vs_cosine_occ']:.3f}x the speed of a plain cosine product")
    print(f"   contributions: {res['contributions_ms_per_image']:.2f} ms per image (both views), once per image; "
          f"the output layer's Jacobian {res['jacobian_s']:.2f} s, once per model")
    print(f"   max |matched - naive| = {diff:.2e}")
    print(f"   matched {res['matched_gflops']:.1f} GFLOP/s vs fp32 GEMM {res['gemm_fp32_gflops']:.1f} GFLOP/s: "
          f"{100 * res['matched_vs_gemm']:.0f}% of the GEMM rate; in CPU time {100 * res['matched_vs_gemm_cpu_time']:.0f}% "
          f"(load {res['load']:.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
