"""Bounded memory: QAConvMatcher scores a 20,000-map gallery in under 2 GB of peak process memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# 100 probes x 20,000 gallery maps of 128 x 7 x 7 (float32). The naive formula materialises the
# correlation S and the weights v_p[r] * v_g[s] as [P, G, R, S] = 100 x 20,000 x 49 x 49 float32
# tensors: 19.2 GB each, ~38 GB for the two (plus as much again for their product). The folded,
# chunked path needs the inputs (gallery 502 MB), one correlation chunk (32 MiB by default) and
# the [P, G] result. Measured in a fresh subprocess so that the high-water mark ru_maxrss is
# this job's alone (importing torch itself accounts for ~0.7 GB of it).
CHILD = textwrap.dedent(
    """
    import json, resource, time, torch
    from occtool.matching import QAConvMatcher
    torch.set_num_threads(1)  # steady under pytest-xdist, whose other worker shares the cores
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(100, 128, 7, 7, generator=gen)
    gallery = torch.randn(20000, 128, 7, 7, generator=gen)
    probe_vis = torch.rand(100, 1, 7, 7, generator=gen)
    gallery_vis = torch.rand(20000, 1, 7, 7, generator=gen)
    matcher = QAConvMatcher(num_features=128, height=7, width=7).eval()
    before = peak_mb()
    t0 = time.perf_counter()
    scores = matcher.score(probe, gallery, probe_vis, gallery_vis)
    seconds = time.perf_counter() - t0
    ok = bool(torch.isfinite(scores).all())
    print(json.dumps({"peak_mb": peak_mb(), "before_mb": before, "shape": list(scores.shape), "finite": ok, "seconds": seconds}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kB on Linux only")
def test_matcher_scores_20000_gallery_under_2gb():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Through `sh -c '...; exit'`: sh forks the child instead of exec-ing it. A process started
    # directly from this (large) process inherits its ru_maxrss high-water mark across exec.
    cmd = ["/bin/sh", "-c", '"$0" "$@"; exit $?', sys.executable, "-c", CHILD]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(res)
    assert res["shape"] == [100, 20000] and res["finite"]
    assert res["peak_mb"] < 2048, res
    # scoring itself adds only a chunk's worth, not anything proportional to the gallery
    assert res["peak_mb"] - res["before_mb"] < 400, res
