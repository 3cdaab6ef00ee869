"""Extraction speed, side by side in one run: files on disk -> features, per runtime and thread count.

On the same N aligned LFW files and the same MobileFaceNet, for 1 and 2 threads:
- ``bare_ort``: a bare ONNX Runtime session on occtool's exported graph, inputs already decoded
  and preprocessed in memory (the engine alone; at its best of batch 1, 8 and 32, chosen once);
- ``occtool_ort``: `extract_features(runtime="onnxruntime", threads=T)`: files read, hashed, decoded,
  preprocessed and run through the same graph (one thread: decode-ahead in a prefetch thread; T
  threads: T data-parallel workers on one-thread session calls, `occtool.runtime.parallel`);
- ``occtool_torch``: `extract_features(runtime="torch")`, today's PyTorch path (fused BatchNorm,
  channels-last), torch.set_num_threads(threads).
No flip TTA and no feature cache for the ratio (one forward per image in every column, as the
bare session does); `--flip` adds the eval-gallery setting (image + mirror, match maps) as extra rows.
Prints images/s (best of the rounds) and the ratios occtool_ort / bare_ort (also the median of the
per-round ratios) and occtool_ort / occtool_torch; `uptime`
load before and after (the machine is shared: compare ratios measured in the same run).
With `--detector N`: RetinaFace on N raw LFW photos (250x250), beside a bare session with T
intra-op threads on the same exported graph (inputs decoded and converted in memory):
``occtool_ort``, files -> detections as `occtool align --workers T` runs them (one worker: each
photo decoded and converted for the network in a prefetch thread; else T worker threads sharing
one detector); ``align_ort`` / ``align_torch``, the whole
`align_tree` (files -> aligned crops written; torch: T worker processes), images/s after start-up.

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


def _align_rate(paths: list[Path], workers: int, runtime: str) -> float:
    """`occtool align`'s images/s after start-up (files -> aligned crops written) on `paths`."""
    from occtool.align.tree import AlignConfig, align_tree

    with tempfile.TemporaryDirectory(prefix="bench-align-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        for p in paths:
            (src / p.parent.name).mkdir(parents=True, exist_ok=True)
            (src / p.parent.name / p.name).symlink_to(p)
        out.mkdir()
        metrics = align_tree(src, out, AlignConfig(workers=workers, runtime=runtime, device="cpu")).metrics
    return metrics["images_per_s_after_startup"]


def _bench_detector(args) -> list[dict]:
    from occtool.data.images import read_image_rgb
    from occtool.detect import RetinaFaceDetector
    from occtool.detect.retinaface import BGR_MEAN
    from occtool.resources import shared_root
    from occtool.runtime import make_session
    from occtool.runtime.parallel import ordered_map
    from occtool.runtime.prefetch import prefetched

    paths = sorted((shared_root() / "data" / "lfw" / "images").rglob("*.jpg"))[: args.detector]
    n, rows = len(paths), []
    mean = np.array(BGR_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    xs = [np.ascontiguousarray(read_image_rgb(p)[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) - mean
          for p in paths]
    print(f"== RetinaFace, {n} raw LFW photos (250x250); load {os.getloadavg()[0]:.2f}")
    det = RetinaFaceDetector(runtime="onnxruntime", threads=1)  # align's: one-thread calls, shared by its workers
    det.detect(read_image_rgb(paths[0]))  # export / check / warm-up
    for t in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(1)
        sess = make_session(det._graph.path, threads=t)

        def bare():
            for x in xs:
                sess.run(None, {"input": x})

        def read(p):  # align's reading step: decode, then the detector's input conversion
            img = read_image_rgb(p)
            return img, det.prepare(img)

        def detect_files():  # as align runs them: read ahead with one worker, else worker threads
            if t == 1:
                return [det.detect(img, prepared=x) for _, (img, x) in prefetched(read, paths)]
            return list(ordered_map(lambda p: det.detect(read_image_rgb(p)), paths, workers=t))

        rates: dict[str, list[float]] = {"bare_ort": [], "occtool_ort": [], "align_ort": [], "align_torch": []}
        for _ in range(args.rounds):
            rates["bare_ort"].append(_rate(bare, n))
            rates["occtool_ort"].append(_rate(detect_files, n))
            rates["align_ort"].append(_align_rate(paths, t, "onnxruntime"))
            rates["align_torch"].append(_align_rate(paths, t, "torch"))
        row = {k: max(v) for k, v in rates.items()} | {"threads": t, "load": os.getloadavg()[0]}
        row["ort_vs_bare"] = row["occtool_ort"] / row["bare_ort"]
        row["ort_vs_bare_paired"] = float(np.median(np.array(rates["occtool_ort"]) / rates["bare_ort"]))
        row["align_ort_vs_bare"] = row["align_ort"] / row["bare_ort"]
        row["align_ort_vs_torch"] = row["align_ort"] / row["align_torch"]
        rows.append(row)
        print(f"   {t} thread(s): bare ORT {row['bare_ort']:7.1f} img/s | occtool ORT files -> detections "
              f"{row['occtool_ort']:7.1f} ({row['ort_vs_bare']:.2f}x bare, per round {row['ort_vs_bare_paired']:.2f}x) | align ORT {row['align_ort']:7.1f} "
              f"({row['align_ort_vs_bare']:.2f}x bare) | align torch {row['align_torch']:7.1f} -> ORT/torch "
              f"{row['align_ort_vs_torch']:.2f}x   (load {row['load']:.2f})")
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
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:  # the exported graphs
        return _bench(args, Path(tmp))


def _row(rates: dict[str, list[float]], *, threads: int, setting: str, flip: bool, bare_batch: int) -> dict:
    """One printed row from the rounds' images/s: best of the rounds, and the ratios (the bare
    column halved with flip, since occtool runs each image twice)."""
    bare = np.array(rates["bare_ort"]) / (2 if flip else 1)
    row = {"threads": threads, "setting": setting, "bare_batch": bare_batch, "bare_ort": float(bare.max()),
           "occtool_ort": max(rates["occtool_ort"]), "occtool_torch": max(rates["occtool_torch"]),
           "load": os.getloadavg()[0]}
    row["ort_vs_bare"] = row["occtool_ort"] / row["bare_ort"]
    row["ort_vs_torch"] = row["occtool_ort"] / row["occtool_torch"]
    row["ort_vs_bare_paired"] = float(np.median(np.array(rates["occtool_ort"]) / bare))
    print(f"   {threads} thread(s), {setting:<20} bare ORT {row['bare_ort']:7.1f} img/s (batch {bare_batch}) | occtool "
          f"ORT {row['occtool_ort']:7.1f} ({row['ort_vs_bare']:.2f}x bare, per round {row['ort_vs_bare_paired']:.2f}x) "
          f"| occtool torch {row['occtool_torch']:7.1f} -> ORT/torch {row['ort_vs_torch']:.2f}x   (load {row['load']:.2f})")
    return row


def _bench(args, graph_dir: Path) -> dict:
    from occtool.evaluation import extract_features, model_identity
    from occtool.models import build_backbone, default_weights, preprocess
    from occtool.data.images import read_image_rgb
    from occtool.resources import shared_root

    root = Path(args.root) if args.root else shared_root() / "data" / "lfw_aligned112" / "images"
    paths = sorted(root.rglob("*.jpg"))[: args.images]
    weights = default_weights("mobilefacenet")
    model = build_backbone("mobilefacenet", weights=weights).eval()
    key = model_identity(backbone="mobilefacenet", weights_file=weights, flip=False, kind="backbone")
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
        # the bare session's best batch size, chosen once: then each round times it once, as each
        # occtool column (a best of 3 sizes per round would be a max over 3x the samples of the others)
        bare_batch = max((1, 8, 32), key=lambda b: _bare(sess, x, b))
        for name, kw in settings:
            common = dict(model=model, device="cpu", graph_dir=graph_dir, model_key=key, **kw)
            rates: dict[str, list[float]] = {"bare_ort": [], "occtool_ort": [], "occtool_torch": []}
            for _ in range(args.rounds):  # interleaved, best of the rounds: every column sees the same load
                rates["bare_ort"].append(_bare(sess, x, bare_batch))
                rates["occtool_ort"].append(_rate(lambda: extract_features(
                    paths, runtime="onnxruntime", threads=t, batch_size=args.batch, **common), n))
                rates["occtool_torch"].append(_rate(lambda: extract_features(
                    paths, runtime="torch", batch_size=64, **common), n))
            res["rows"].append(_row(rates, threads=t, setting=name, flip=kw["flip"], bare_batch=bare_batch))
    if args.flip:
        print("   (flip rows: the bare column is halved, since each image runs twice)")
    if args.detector:
        res["detector"] = _bench_detector(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
