"""Occlusion-type classifier latency per face on CPU: PyTorch vs ONNX Runtime, batch 1 and 32,
side by side in one run, on the same real crops (or random inputs when no --data is given).

For each architecture: ms per face and faces/s for {torch, onnx} x {batch 1, batch 32}, the
ratios onnx/torch (speedup) and batch-32/batch-1 per-face cost, and the largest probability
difference between the two runtimes on the timed inputs.

    .venv/bin/python benchmarks/bench_classify.py [--model runs/classify/model.pt]
        [--arch mfn_head,mobilenet_v3_small,resnet18] [--data DIR] [--threads 1 --rounds 5]

Without --model each --arch is built untrained (latency does not depend on the weights; mfn_head
loads the shared MobileFaceNet when present).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _best_ms_per_face(fn, x: np.ndarray, rounds: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * min(times) / len(x)


def _inputs(data: str | None, n: int) -> np.ndarray:
    from occtool.classify.data import load_crops, load_samples
    from occtool.classify.geometry import to_input

    if data:
        samples = load_samples(data)
        picks = np.linspace(0, len(samples) - 1, num=n).round().astype(int)
        return to_input(load_crops([samples[i] for i in picks]))
    return np.random.default_rng(0).uniform(-1, 1, (n, 3, 224, 224)).astype(np.float32)


def _models(args) -> list:
    from occtool.classify.checkpoint import load_classifier
    from occtool.classify.models import create_classifier

    if args.model:
        return [load_classifier(args.model).model]
    out = []
    for name in args.arch.split(","):
        try:
            out.append(create_classifier(name, backbone_weights="default").eval())
        except Exception as exc:  # noqa: BLE001 - e.g. the shared weights are absent
            print(f"skipping {name}: {exc}")
    return out


def bench_one(model, x: np.ndarray, *, rounds: int, threads: int, tmp: Path) -> dict:
    from occtool.classify.export import export_onnx, onnx_session
    from occtool.classify.predict import OnnxPredictor, TorchPredictor

    path = tmp / f"{model.arch}.onnx"
    export_onnx(model, path, check_inputs=x[:4])
    runners = {"torch": TorchPredictor(model).probabilities, "onnx": OnnxPredictor(onnx_session(path, threads=threads)).probabilities}
    row: dict = {"arch": model.arch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
    for kind, fn in runners.items():
        for batch in (1, 32):
            row[f"{kind}_b{batch}_ms"] = round(_best_ms_per_face(fn, x[:batch], rounds), 3)
    row["onnx_speedup_b1"] = round(row["torch_b1_ms"] / row["onnx_b1_ms"], 2)
    row["onnx_speedup_b32"] = round(row["torch_b32_ms"] / row["onnx_b32_ms"], 2)
    row["torch_b32_vs_b1"] = round(row["torch_b32_ms"] / row["torch_b1_ms"], 2)
    row["onnx_b32_vs_b1"] = round(row["onnx_b32_ms"] / row["onnx_b1_ms"], 2)
    row["max_prob_diff"] = float(np.abs(runners["torch"](x) - runners["onnx"](x)).max())
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="A classifier checkpoint (model.pt); default: one untrained model per --arch.")
    ap.add_argument("--arch", default="mfn_head,mobilenet_v3_small,resnet18")
    ap.add_argument("--data", default=None, help="Real faces (augment folder, manifest or class tree) for the inputs.")
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = _inputs(args.data, max(args.faces, 32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in _models(args):
            rows.append(bench_one(model, x, rounds=args.rounds, threads=args.threads, tmp=Path(tmp)))
    print(f"classifier latency per face, CPU, {args.threads} thread(s), best of {args.rounds}")
    print(f"{'arch':20s} {'torch b1':>9s} {'onnx b1':>9s} {'x':>6s} {'torch b32':>10s} {'onnx b32':>9s} {'x':>6s}  max|dp|")
    for r in rows:
        print(f"{r['arch']:20s} {r['torch_b1_ms']:8.2f}ms {r['onnx_b1_ms']:8.2f}ms {r['onnx_speedup_b1']:5.2f}x "
              f"{r['torch_b32_ms']:9.2f}ms {r['onnx_b32_ms']:8.2f}ms {r['onnx_speedup_b32']:5.2f}x  {r['max_prob_diff']:.1e}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
