"""Rank-1 as a function of gallery size, from one eval-gallery run's scores.csv (no rescoring).

A probe whose true identity ranks r among G gallery identities is rank-1 in a random sub-gallery
of m identities that holds its identity exactly when the m - 1 others all rank below it:

    P(rank-1 | r, m) = C(G - r, m - 1) / C(G - 1, m - 1)

so the expected rank-1 over all such sub-galleries is the mean of that over the probes (exact,
no sampling). It tells a gallery-size effect (a validation split of 100 people against a test
gallery of 2,195) from a generalisation gap: compare the test at m = 100 with validation.

    python benchmarks/rank1_vs_gallery_size.py RUN/scores.csv [--sizes 100,500,1000]
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict


def expected_rank1(ranks: list[int], gallery: int, size: int) -> float:
    """Mean over probes of C(G - r, m - 1) / C(G - 1, m - 1) (0 when r > G - m + 1)."""
    if not 1 <= size <= gallery:
        raise ValueError(f"size {size} must be within 1..{gallery}")

    def log_choose(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    total = 0.0
    for r in ranks:
        if gallery - r >= size - 1:
            total += math.exp(log_choose(gallery - r, size - 1) - log_choose(gallery - 1, size - 1))
    return total / len(ranks)


def read_ranks(path: str) -> dict[str, list[int]]:
    """scores.csv -> {method: ranks of the probes whose identity is in the gallery}."""
    out: dict[str, list[int]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["in_gallery"] == "True":
                out[row["method"]].append(int(row["rank"]))
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores", help="scores.csv of an eval-gallery run")
    ap.add_argument("--gallery", type=int, required=True, help="gallery identities G of that run (metrics.json)")
    ap.add_argument("--sizes", default="100,500,1000", help="sub-gallery sizes m (comma list)")
    args = ap.parse_args()
    ranks_of = read_ranks(args.scores)
    if any(r > args.gallery for ranks in ranks_of.values() for r in ranks):
        ap.error(f"--gallery {args.gallery} is below a rank in {args.scores}: give the run's gallery identities")
    # sizes above the gallery are left out; the full gallery comes last
    sizes = sorted({int(s) for s in args.sizes.split(",") if 1 <= int(s) < args.gallery}) + [args.gallery]
    print("method".ljust(20) + "".join(f"m={m}".rjust(10) for m in sizes))
    for method, ranks in ranks_of.items():
        print(method.ljust(20) + "".join(f"{100 * expected_rank1(ranks, args.gallery, m):10.2f}" for m in sizes))


if __name__ == "__main__":
    main()
