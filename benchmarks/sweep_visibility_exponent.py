"""Choose cosine_occ_matched's visibility exponent (`eval-gallery --vis-exponent`,
`validation.visibility_exponent`) on the VALIDATION people of one or more training runs, never on
the test protocol. Each run's validation set (same held-out people, same seeded probe occlusion)
is rebuilt from its config.yaml, with one more occluded probe set per family of its `test`
section (`--no-families`: masked only), and scored by the training validation (the evaluation
engine) once per exponent.

    .venv/bin/python benchmarks/sweep_visibility_exponent.py RUN_DIR [RUN_DIR ...]
        [--checkpoint model.pt] [--exponents 1,0.75,0.5,0.35] [--threads 1]

Prints, per run and exponent, cosine_occ_matched rank-1: the mean over the occluded probe sets,
masked, clean; then the same averaged over the runs, and a JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def sweep_run(run_dir: Path, checkpoint: str, exponents: list[float], *, families: bool) -> dict[float, dict]:
    """{exponent: {probe set: cosine_occ_matched rank-1 in %}} on one run's validation people."""
    from occtool.training.validation import evaluate, run_validation_set

    _, model, _, ev = run_validation_set(run_dir, checkpoint, families=families)
    out = {}
    for e in exponents:
        res = evaluate(ev, model=model, matcher=None, device="cpu", visibility_exponent=e, heavy_sets=())
        out[e] = {k.split("/")[0]: round(100 * v, 2) for k, v in res.items() if k.endswith("/cosine_occ_matched/rank1")}
    return out


def summary(per_set: dict) -> tuple[float, float, float]:
    """(mean over the occluded sets, masked, clean) of one {probe set: rank-1}."""
    occluded = [v for k, v in per_set.items() if k != "clean"]
    return sum(occluded) / len(occluded), per_set["masked"], per_set["clean"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dirs", type=Path, nargs="+")
    ap.add_argument("--checkpoint", default="model.pt")
    ap.add_argument("--exponents", default="1,0.75,0.5,0.35")
    ap.add_argument("--no-families", action="store_true", help="only the run's masked probes, no other occluders")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    exponents = [float(x) for x in args.exponents.split(",")]
    if not exponents or min(exponents) <= 0:
        ap.error("--exponents: numbers > 0, comma-separated")
    runs = {str(d): sweep_run(d, args.checkpoint, exponents, families=not args.no_families) for d in args.run_dirs}
    for name, res in runs.items():
        for e in exponents:
            occ, masked, clean = summary(res[e])
            print(f"{name}  exponent {e:<5} occluded mean {occ:.2f}  masked {masked:.2f}  clean {clean:.2f}")
    for e in exponents:
        rows = [summary(res[e]) for res in runs.values()]
        means = [sum(col) / len(rows) for col in zip(*rows)]
        print(f"mean of {len(rows)} run(s)  exponent {e:<5} occluded mean {means[0]:.2f}  masked {means[1]:.2f}  "
              f"clean {means[2]:.2f}")
    print(json.dumps({name: {str(e): r for e, r in res.items()} for name, res in runs.items()}))


if __name__ == "__main__":
    main()
