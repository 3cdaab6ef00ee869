"""Choose the fusion weight of `fused` / `fused_matched` on the VALIDATION people of a training
run (never on the test protocol): the run's own validation set (same held-out people, same
seeded probe occlusion) is rebuilt from its config.yaml and scored by the training validation
(`occtool.training.validation.evaluate`, i.e. the evaluation engine) once per weight.

    .venv/bin/python benchmarks/sweep_fusion_weight.py RUN_DIR [--checkpoint model.pt]
        [--weights 0.1,0.2,0.3,0.5,0.75,1] [--threads 1]

Prints, per weight, clean and masked rank-1 of fused and fused_matched beside cosine_occ_matched,
qaconv_occ, and a JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--checkpoint", default="model.pt")
    ap.add_argument("--weights", default="0.1,0.2,0.3,0.5,0.75,1,1.5")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from occtool.training.validation import evaluate, run_validation_set

    _, model, matcher, ev = run_validation_set(args.run_dir, args.checkpoint)
    dev = torch.device("cpu")
    rows = []
    for w in [float(x) for x in args.weights.split(",")]:
        res = evaluate(ev, model=model, matcher=matcher, device=dev, fusion_weight=w, fused_matched=True)
        row = {"weight": w, **{k: round(100 * v, 2) for k, v in res.items() if k.endswith("/rank1")}}
        rows.append(row)
        print(f"w={w:<5} " + "  ".join(f"{p} {m} {row[f'{p}/{m}/rank1']:.1f}" for p in ("clean", "masked")
                                          for m in ("cosine_occ_matched", "qaconv_occ", "fused", "fused_matched")))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
