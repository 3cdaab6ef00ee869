"""Training feature cache build time, side by side in one run, for the QAConv branch's cache
(stage maps beside the feature maps, `configs/lfw_qaconv.yaml`) of the first N training images:

- ``torch_serial``: the body in PyTorch (fused BatchNorm, channels-last, T torch threads), the
  views decoded and occluded in the calling thread (the build before issue 15's speed-up);
- ``ort_serial``: the body's graph with its stage output in ONNX Runtime (T intra-op threads),
  views made serially;
- ``ort_parallel``: the same graph, the views made by T worker threads one chunk ahead
  (`occtool.training.data.cache_view_stream`): what `occtool train` runs now.

Prints wall and CPU seconds (this process, all threads: user + system) per row and checks that
the caches agree (serial and parallel views bit-identical; the graph's maps within float16 rounding
of PyTorch's). The graph is exported and checked once, before the timed rows. The machine is
shared: compare the CPU seconds and the ratios of one run; `uptime` before and after.

    .venv/bin/python benchmarks/bench_feature_cache.py [--images 256 --threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _build(records, loader_args, backbone, cfg):
    from occtool.training.data import ImageLoader, build_feature_cache

    loader = ImageLoader(records, **loader_args)
    t0, c0 = time.perf_counter(), time.process_time()
    cache = build_feature_cache(records, loader, backbone, cfg, device=torch.device("cpu"), weights_desc="default")
    return cache, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from occtool.augment import OcclusionSynthesizer
    from occtool.config import load_config
    from occtool.models import build_backbone, default_weights, inference_copy
    from occtool.training import TrainConfig
    from occtool.training.data import build_train_data

    os.chdir(REPO)  # the config's data paths are relative to the repository root
    torch.set_num_threads(args.threads)
    base = load_config(TrainConfig, yaml_path=REPO / "configs" / "lfw_qaconv.yaml", overrides=[])
    records = build_train_data(base).records[: args.images]
    backbone = inference_copy(build_backbone("mobilefacenet", weights=default_weights("mobilefacenet")).eval(), "cpu")
    loader_args = dict(synthesizer=OcclusionSynthesizer(config=base.data.occlusion), mask_root=None, flip=base.data.flip)
    rows = {"torch_serial": ("torch", 1), "ort_serial": ("onnxruntime", 1), "ort_parallel": ("onnxruntime", args.threads)}
    print(f"{len(records)} images x {base.data.cache_views} views, {args.threads} threads; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        (Path(tmp) / "onnx").mkdir()
        caches = {}
        for name, (runtime, workers) in [("warm-up", ("onnxruntime", 1))] + list(rows.items()):
            row_dir = Path(tmp) / name  # its own feature cache folder, the graph folder shared
            row_dir.mkdir()
            (row_dir / "onnx").symlink_to(Path(tmp) / "onnx")
            cfg = load_config(TrainConfig, yaml_path=REPO / "configs" / "lfw_qaconv.yaml", overrides=[
                f"data.runtime={runtime}", f"data.threads={args.threads}", f"threads={workers}",
                f"data.cache_dir={row_dir}"])
            subset = records[:8] if name == "warm-up" else records  # the warm-up exports the graph
            cache, wall, cpu = _build(subset, loader_args, backbone, cfg)
            if name != "warm-up":
                caches[name] = cache
                print(f"{name:13s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  {len(records) / wall:6.1f} images/s")
    a, b, c = caches["torch_serial"], caches["ort_serial"], caches["ort_parallel"]
    from occtool.training.data import CACHE_ARRAYS

    same = all(torch.equal(getattr(b, n), getattr(c, n)) for n in CACHE_ARRAYS + ("stage",))
    print(f"ort_parallel == ort_serial bit for bit: {same}; graph vs torch max abs diff: "
          f"stage {float((b.stage.float() - a.stage.float()).abs().max()):.2e}, "
          f"fm {float((b.fm.float() - a.fm.float()).abs().max()):.2e}; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
