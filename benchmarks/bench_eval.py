"""Evaluation scoring throughput: probes/s and peak memory, 1,000 probes vs 10,000 and 100,000
gallery templates, for cosine identification and for the cosine-shortlist + QAConv re-ranking
path of `occtool eval-gallery`.

    .venv/bin/python benchmarks/bench_eval.py                  # both sizes, both paths, CPU
    .venv/bin/python benchmarks/bench_eval.py --gallery 10000 --device cuda --json out.json

Synthetic features (random, so the accuracy numbers are meaningless; the work is the real
work): 128-d normalised embeddings (MobileFaceNet size) and 512x7x7 float16 feature maps. The
gallery maps live in a memory-mapped .npy file, as a large gallery would: only the shortlisted
maps are ever read, so the process's own (anonymous) memory stays bounded whatever the gallery
size; file pages the OS caches are reported separately. Each case runs in a fresh subprocess
so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples RssAnon (process-private memory) and VmRSS every 20 ms in a thread."""

    def __init__(self):
        self.anon = 0
        self.rss = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.anon = max(self.anon, _status_kb("RssAnon"))
            self.rss = max(self.rss, _status_kb("VmRSS"))
            time.sleep(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.anon = max(self.anon, _status_kb("RssAnon"))
        self.rss = max(self.rss, _status_kb("VmRSS"))


def make_gallery_maps(path: Path, n: int, channels: int, seed: int = 0) -> None:
    """n x channels x 7 x 7 float16 .npy written block by block (a random block repeated with noise)."""
    import numpy as np

    if path.exists():
        return
    rng = np.random.default_rng(seed)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, channels, 7, 7))
    block = rng.standard_normal((1000, channels, 7, 7)).astype(np.float16)
    for a in range(0, n, 1000):
        b = min(a + 1000, n)
        arr[a:b] = np.roll(block, a // 1000, axis=1)[: b - a]
    arr.flush()
    del arr


def run_case(args) -> dict:
    """One case in this process: returns timings and peak memory."""
    import numpy as np
    import torch

    from occtool.evaluation.scoring import CosineScorer, QAConvScorer, identify, identify_shortlist
    from occtool.matching import QAConvMatcher

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device(args.device)
    P, G, D = args.probes, args.gallery, 128
    n_ids = G  # one template (image) per gallery identity
    labels = np.arange(G)
    true_ids = rng.integers(0, n_ids, P)
    templates = torch.nn.functional.normalize(torch.randn(G, D), dim=1)
    probes = torch.nn.functional.normalize(templates[torch.as_tensor(true_ids)] + 0.8 * torch.randn(P, D) / D**0.5, dim=1)
    cos = CosineScorer(probes, templates, device=device)
    out = {"case": args.case, "probes": P, "gallery": G, "device": str(device), "threads": torch.get_num_threads()}
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if args.case == "cosine":
            r = identify(cos, true_ids, n_ids, max_impostors=args.max_impostors)
        else:
            gmaps = np.load(args.maps, mmap_mode="r")
            pmaps = torch.from_numpy(np.array(gmaps[true_ids])).float() + 0.5 * torch.randn(P, gmaps.shape[1], 7, 7)
            matcher = QAConvMatcher(num_features=gmaps.shape[1], height=7, width=7)
            qa = QAConvScorer(matcher, pmaps, gmaps, labels, n_ids, device=device)
            t0 = time.perf_counter()  # probe-map set-up is not scoring
            r = identify_shortlist(cos, qa, true_ids, n_ids, shortlist_k=args.k, impostors_per_probe=32)
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    out.update(
        seconds=dt,
        probes_per_s=P / dt,
        rank1=float(np.mean(r.ranks <= 1)),
        peak_anon_mib=mem.anon / 1024,
        peak_rss_mib=mem.rss / 1024,
    )
    if args.case == "shortlist":
        out["shortlist_k"] = args.k
    if device.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="eval-gallery scoring benchmark")
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--gallery", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--cases", nargs="+", default=["cosine", "shortlist"], choices=["cosine", "shortlist"])
    ap.add_argument("--k", type=int, default=100, help="shortlist size")
    ap.add_argument("--channels", type=int, default=512, help="feature-map channels of the synthetic maps")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-impostors", type=int, default=50_000_000)
    ap.add_argument("--workdir", type=Path, default=None, help="where the gallery map files go (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--maps", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:  # child process
        args.gallery = args.gallery[0]
        print(json.dumps(run_case(args)))
        return
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_eval_")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for g in args.gallery:
            maps = args.workdir / f"gallery_{g}_{args.channels}.npy"
            if "shortlist" in args.cases:
                t = time.perf_counter()
                make_gallery_maps(maps, g, args.channels)
                print(f"# gallery maps {maps.name}: {maps.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - t:.1f}s",
                      file=sys.stderr)
            for case in args.cases:
                cmd = [sys.executable, __file__, "--case", case, "--gallery", str(g), "--probes", str(args.probes),
                       "--k", str(args.k), "--device", args.device, "--maps", str(maps),
                       "--max-impostors", str(args.max_impostors)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr)
                    raise SystemExit(f"case {case} G={g} failed")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(res)
                print(f"{case:9s} P={res['probes']} G={res['gallery']:>7d}: {res['probes_per_s']:9.1f} probes/s "
                      f"({res['seconds']:.2f}s)  peak anon {res['peak_anon_mib']:.0f} MiB, "
                      f"peak rss {res['peak_rss_mib']:.0f} MiB" +
                      (f", cuda {res['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in res else ""), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
