"""Extraction speed, side by side in one run: files on disk -> features, per runtime and thread count.

On the same N aligned LFW files and the same MobileFaceNet, for 1 and 2 threads:
- ``bare_ort``: a bare ONNX Runtime session on occtool's exported graph, inputs already decoded
  and preprocessed in memory (the engine alone; the best of batch 1, 8 and 32);
- ``occtool_ort``: `extract_features(runtime="onnxruntime")`: files read, hashed, decoded,
  preprocessed (in a prefetch thread) and run through the same graph;
- ``occtool_torch``: `extract_features(runtime="torch")`, today's PyTorch path (fused BatchNorm,
  channels-last), torch.set_num_threads(threads).
No flip TTA and no feature cache for the ratio (one forward per image in every column, as the
bare session does); `--flip` adds the eval-gallery setting (image + mirror, match maps) as extra rows.
Prints images/s and the ratios occtool_ort / bare_ort and occtool_ort / occtool_torch; `uptime`
load before and after (the machine is shared: compare ratios measured in the same run).
With `--detector N`: the same for RetinaFace on N raw LFW photos (250x250): files -> detections
as align's workers run them (each file decoded in a prefetch thread while `RetinaFaceDetector.detect`
runs on the one before: `occtool.runtime.prefetch`, under extraction's setting
`occtool.evaluation.extract.PREFETCH`) with each runtime, beside a bare session on the same exported
RetinaFace graph (inputs decoded and converted in memory); `ort_serial` is the ONNX Runtime
detector with decode and detect one after the other.

    .venv/bin/python benchmarks/bench_extract.py [--images 512 --batch 32 --threads 1,2 --rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch



def _bare(sess, x: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for s in range(0, len(x), batch):
        sess.run(None, {"input": x[s : s + batch]})
    return len(x) / (time.perf_counter() - t0)


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def _bench_detector(args, graph_dir: Path) -> list[dict]:
    from occtool.data.images import read_image_rgb
    from occtool.detect import RetinaFaceDetector
    from occtool.detect.retinaface import BGR_MEAN
    from occtool.resources import shared_root
    from occtool.runtime import make_session
    from occtool.evaluation.extract import _prefetch
    from occtool.runtime.prefetch import prefetched

    paths = sorted((shared_root() / "data" / "lfw" / "images").rglob("*.jpg"))[: args.detector]
    n, rows = len(paths), []
    mean = np.array(BGR_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    xs = [np.ascontiguousarray(read_image_rgb(p)[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) - mean
          for p in paths]
    print(f"== RetinaFace, {n} raw LFW photos (250x250), files -> detections; load {os.getloadavg()[0]:.2f}")
    for t in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(t)
        det = {rt: RetinaFaceDetector(runtime=rt, threads=t, graph_dir=graph_dir) for rt in ("torch", "onnxruntime")}
        for d in det.values():
            d.detect(read_image_rgb(paths[0]))  # export / check / warm-up
        sess = make_session(det["onnxruntime"]._graph.path, threads=t)

        def bare():
            for x in xs:
                sess.run(None, {"input": x})

        rates: dict[str, list[float]] = {"bare_ort": [], "occtool_ort": [], "occtool_torch": [], "ort_serial": []}
        for _ in range(args.rounds):
            rates["bare_ort"].append(_rate(bare, n))
            for rt in ("onnxruntime", "torch"):
                files = (prefetched(read_image_rgb, paths) if _prefetch(t) else
                         ((p, read_image_rgb(p)) for p in paths))
                rates["occtool_" + ("ort" if rt == "onnxruntime" else rt)].append(
                    _rate(lambda: [det[rt].detect(img) for _, img in files], n))
            rates["ort_serial"].append(_rate(lambda: [det["onnxruntime"].detect(read_image_rgb(p)) for p in paths], n))
        row = {k: max(v) for k, v in rates.items()} | {"threads": t, "load": os.getloadavg()[0]}
        row["ort_vs_bare"] = row["occtool_ort"] / row["bare_ort"]
        row["ort_vs_torch"] = row["occtool_ort"] / row["occtool_torch"]
        rows.append(row)
        print(f"   {t} thread(s): bare ORT {row['bare_ort']:7.1f} img/s | occtool ORT {row['occtool_ort']:7.1f} "
              f"({row['ort_vs_bare']:.2f}x bare) | occtool torch {row['occtool_torch']:7.1f} -> ORT/torch "
              f"{row['ort_vs_torch']:.2f}x | ORT without prefetch {row['ort_serial']:7.1f} ({row['ort_serial'] / row['bare_ort']:.2f}x bare)"
              f"   (load {row['load']:.2f})")
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64, help="batch_size given to extract_features (the ORT path caps it at 8)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flip", action="store_true", help="also the eval-gallery setting (flip TTA + match maps)")
    ap.add_argument("--root", default=None, help="aligned image tree (default ../shared/data/lfw_aligned112/images)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--detector", type=int, default=0, help="also RetinaFace on this many raw LFW photos")
    args = ap.parse_args(argv)

    from occtool.evaluation import extract_features, model_identity
    from occtool.models import build_backbone, default_weights, preprocess
    from occtool.data.images import read_image_rgb
    from occtool.resources import shared_root

    root = Path(args.root) if args.root else shared_root() / "data" / "lfw_aligned112" / "images"
    paths = sorted(root.rglob("*.jpg"))[: args.images]
    weights = default_weights("mobilefacenet")
    model = build_backbone("mobilefacenet", weights=weights).eval()
    key = model_identity(backbone="mobilefacenet", weights_file=weights, flip=False, kind="backbone")
    graph_dir = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    # export + check once (not timed), on the real faces
    extract_features(paths[:16], model=model, device="cpu", runtime="onnxruntime", flip=False, with_maps=False,
                     graph_dir=graph_dir, model_key=key, threads=1)
    graph = graph_dir / f"{key}.onnx"
    x = preprocess(np.stack([read_image_rgb(p) for p in paths]), model.input_spec).numpy()

    res: dict = {"images": len(paths), "batch": args.batch, "load_before": os.getloadavg()[0], "rows": []}
    print(f"== extraction, {len(paths)} files of {root}, MobileFaceNet; load {res['load_before']:.2f} (1 min)")
    settings = [("no flip, embeddings", dict(flip=False, with_maps=False))]
    if args.flip:
        settings.append(("flip + match maps", dict(flip=True, with_maps=True)))
    from occtool.runtime import make_session

    n = len(paths)
    for t in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(t)
        sess = make_session(graph, threads=t)
        sess.run(None, {"input": x[:1]})  # warm-up
        for name, kw in settings:
            common = dict(model=model, device="cpu", graph_dir=graph_dir, model_key=key, **kw)
            rates: dict[str, list[float]] = {"bare_ort": [], "occtool_ort": [], "occtool_torch": []}
            for _ in range(args.rounds):  # interleaved, best of the rounds: every column sees the same load
                rates["bare_ort"].append(max(_bare(sess, x, b) for b in (1, 8, 32)))
                rates["occtool_ort"].append(_rate(lambda: extract_features(
                    paths, runtime="onnxruntime", threads=t, batch_size=args.batch, **common), n))
                rates["occtool_torch"].append(_rate(lambda: extract_features(
                    paths, runtime="torch", batch_size=64, **common), n))
            best = {k: max(v) for k, v in rates.items()}
            row = {"threads": t, "setting": name, "bare_ort": best["bare_ort"] / (2 if kw["flip"] else 1),
                   "occtool_ort": best["occtool_ort"], "occtool_torch": best["occtool_torch"],
                   "load": os.getloadavg()[0]}
            row["ort_vs_bare"] = row["occtool_ort"] / row["bare_ort"]
            row["ort_vs_torch"] = row["occtool_ort"] / row["occtool_torch"]
            res["rows"].append(row)
            print(f"   {t} thread(s), {name:<20} bare ORT {row['bare_ort']:7.1f} img/s | occtool ORT "
                  f"{row['occtool_ort']:7.1f} ({row['ort_vs_bare']:.2f}x bare) | occtool torch {row['occtool_torch']:7.1f} "
                  f"-> ORT/torch {row['ort_vs_torch']:.2f}x   (load {row['load']:.2f})")
    if args.flip:
        print("   (flip rows: the bare column is halved, since each image runs twice)")
    if args.detector:
        res["detector"] = _bench_detector(args, graph_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
