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
cosine's reductions are not counted) against a measured fp32 GEMM rate: per round as many
[1024, 1024] x [1024, 1024] products as take about as long as one matched call, interleaved with
it so that both see the same load, and the same number of rounds for both (min over rounds, and
the median of the per-round ratios); also the same ratio in CPU seconds of this process (what a
shared machine's load does not distort as much: descheduled time counts for neither side), and
against the best single GEMM of 3 per round (the reference of sessions 1-7: stricter, since the
min of many 13 ms samples catches the VM's fastest moments).

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


def _matched_vs_gemm(matched, gemm, *, rounds: int, flops: int) -> dict:
    """matched's GFLOP/s (`flops` per call) against the fp32 GEMM's, timed alike: per round one
    matched call and one run of as many 1024^3 GEMMs as take about as long (a sustained rate; the
    best of many 13 ms GEMMs would catch the machine's fastest moments, which a call of a few
    hundred ms cannot), interleaved so both see the same load, in wall and in CPU seconds (time
    the process was descheduled counts for neither). Also the stricter old reference, the best
    single GEMM of 3 per round."""
    gemm_flops = 2 * 1024**3
    n = max(1, round(_best(matched, 1) / _best(gemm, 3)))

    def gemms():
        for _ in range(n):
            gemm()

    wall: dict[str, list[float]] = {"gemm": [], "matched": [], "short": []}
    cpu: dict[str, list[float]] = {"gemm": [], "matched": []}
    for _ in range(rounds):
        for name, fn in (("gemm", gemms), ("matched", matched)):
            wall[name].append(_best(fn, 1) / (n if name == "gemm" else 1))
            cpu[name].append(_best(fn, 1, time.process_time) / (n if name == "gemm" else 1))
        wall["short"].append(_best(gemm, 3))
    rate = {k: (gemm_flops if k != "matched" else flops) / min(v) / 1e9 for k, v in wall.items()}
    paired = sorted(flops / m / (gemm_flops / g) for m, g in zip(wall["matched"], wall["gemm"]))
    return {"matched_s": min(wall["matched"]), "gemms_per_round": n, "gemm_fp32_gflops": rate["gemm"],
            "matched_gflops": rate["matched"], "matched_vs_gemm": rate["matched"] / rate["gemm"],
            "matched_vs_gemm_paired": paired[len(paired) // 2],
            "matched_vs_gemm_cpu_time": min(cpu["gemm"]) / gemm_flops * flops / min(cpu["matched"]),
            "gemm_short_gflops": rate["short"], "matched_vs_gemm_short": rate["matched"] / rate["short"]}


def _backbone():
    """MobileFaceNet with non-trivial BatchNorm statistics (a random network's are identity)."""
    from occtool.models import build_backbone

    torch.manual_seed(0)
    bb = build_backbone("mobilefacenet").eval()
    with torch.no_grad():
        for m in bb.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return bb


def _inputs(bb, P: int, G: int, views: int, g) -> dict:
    """Random maps [N, V, C, H, W]; visibilities [N, V*L] (the probes' lower face hidden)."""
    c, (h, w) = bb.feature_channels, bb.feature_size
    vis_p = torch.rand((P, views * h * w), generator=g)
    vis_p.view(P, views, h, w)[:, :, 4:] = 0.0
    return {"maps_p": torch.randn((P, views, c, h, w), generator=g), "maps_g": torch.randn((G, views, c, h, w), generator=g),
            "vis_p": vis_p, "vis_g": torch.rand((G, views * h * w), generator=g).clamp_min(0.8)}


@torch.inference_mode()
def _measure(bb, x: dict, *, rounds: int, naive_probes: int, views: int, g) -> tuple[dict, dict, float]:
    """(results, seconds per method for all P x G pairs, max |matched - naive|)."""
    from occtool.matching import QAConvMatcher
    from occtool.matching.visibility_matched import (
        VisibilityMatchedScorer,
        output_layer_bias,
        output_layer_contributions,
        output_layer_jacobian,
    )

    (h, w), d = bb.feature_size, bb.embedding_dim
    maps_p, maps_g, vis_p, vis_g = x["maps_p"], x["maps_g"], x["vis_p"], x["vis_g"]
    P, G = len(maps_p), len(maps_g)
    res: dict = {}
    t0 = time.perf_counter()
    jac = output_layer_jacobian(bb)
    res["jacobian_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cont_g = torch.cat([output_layer_contributions(bb, maps_g[:, v], jacobian=jac) for v in range(views)], dim=1)
    res["contributions_ms_per_image"] = 1e3 * (time.perf_counter() - t0) / G
    cont_p = torch.cat([output_layer_contributions(bb, maps_p[:, v], jacobian=jac) for v in range(views)], dim=1)
    scorer = VisibilityMatchedScorer(bias=output_layer_bias(bb), views=views)
    emb_p, emb_g = (F.normalize(torch.randn(n, d, generator=g), dim=1) for n in (P, G))
    matcher = QAConvMatcher(num_features=128, height=h, width=w).eval()
    neck_p, neck_g = torch.randn((P, 128, h, w), generator=g), torch.randn((G, 128, h, w), generator=g)
    qa_vis_p, qa_vis_g = vis_p.view(P, views, 1, h, w)[:, 0], vis_g.view(G, views, 1, h, w)[:, 0]
    ga, gb = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
    res.update(_matched_vs_gemm(lambda: scorer.score(cont_p, cont_g, vis_p, vis_g), lambda: ga @ gb,
                                rounds=rounds, flops=P * G * 4 * views * h * w * d))
    t = {"cosine_occ": _best(lambda: emb_p @ emb_g.T, rounds), "matched": res.pop("matched_s"),
         "qaconv_occ": _best(lambda: matcher.score(neck_p, neck_g, qa_vis_p, qa_vis_g), 1)}
    k = min(naive_probes, P)
    t0 = time.perf_counter()
    ref = _naive(bb, maps_p[:k], vis_p[:k], maps_g, vis_g, views)
    t["naive"] = (time.perf_counter() - t0) * P / k  # extrapolated to all P probes
    return res, t, float((scorer.score(cont_p[:k], cont_g, vis_p[:k], vis_g) - ref).abs().max())


def _report(res: dict) -> None:
    print(f"== visibility-matched scoring: P={res['P']} G={res['G']} D={res['D']} VL={res['VL']}, "
          f"{res['threads']} thread(s)")
    for name, rate in res["pairs_per_s"].items():
        print(f"   {name:<11} {rate:14,.0f} pairs/s")
    print(f"   matched is {res['matched_vs_naive']:.0f}x faster than the naive per-pair output layer, "
          f"{res['matched_vs_qaconv_occ']:.1f}x the speed of qaconv_occ, "
          f"{res['matched_vs_cosine_occ']:.3f}x the speed of a plain cosine product")
    print(f"   contributions: {res['contributions_ms_per_image']:.2f} ms per image (both views), once per image; "
          f"the output layer's Jacobian {res['jacobian_s']:.2f} s, once per model")
    print(f"   max |matched - naive| = {res['max_abs_diff_vs_naive']:.2e}")
    print(f"   matched {res['matched_gflops']:.1f} GFLOP/s vs fp32 GEMM {res['gemm_fp32_gflops']:.1f} GFLOP/s: "
          f"{100 * res['matched_vs_gemm']:.0f}% of the GEMM rate (per round {100 * res['matched_vs_gemm_paired']:.0f}%); "
          f"in CPU time {100 * res['matched_vs_gemm_cpu_time']:.0f}%; against the best single 1024^3 GEMM "
          f"({res['gemm_short_gflops']:.1f} GFLOP/s) {100 * res['matched_vs_gemm_short']:.0f}% (load {res['load']:.2f})")


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

    bb, views = _backbone(), 2
    g = torch.Generator().manual_seed(1)
    x = _inputs(bb, args.probes, args.gallery, views, g)
    measured, t, diff = _measure(bb, x, rounds=args.rounds, naive_probes=args.naive_probes, views=views, g=g)
    pairs = args.probes * args.gallery
    res = {"P": args.probes, "G": args.gallery, "D": bb.embedding_dim, "VL": x["vis_p"].shape[1],
           "threads": args.threads, **measured,
           "pairs_per_s": {name: pairs / s for name, s in t.items()},
           "matched_vs_naive": t["naive"] / t["matched"], "matched_vs_qaconv_occ": t["qaconv_occ"] / t["matched"],
           "matched_vs_cosine_occ": t["cosine_occ"] / t["matched"], "max_abs_diff_vs_naive": diff,
           "load": os.getloadavg()[0]}
    _report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
