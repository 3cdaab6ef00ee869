"""Which pairs to draw: one pair, a pairs file, or the hardest cases of an `eval-gallery` run.

From a run folder (`scores.csv` + `config.yaml`):
- identification (`scores.csv` rows: method, probe, identity, rank, genuine_score, top1_identity,
  top1_score, ...): the N *false matches* with the highest top-1 score among probes whose top-1
  identity is wrong, drawn against that identity's gallery image, and the N *misses*: the in-gallery
  probes with the lowest genuine score, drawn against their own identity's gallery image. A gallery
  identity's image is the first file (sorted) of `gallery_root/<identity>/` (one per identity in the
  `make-protocol` split). Probe paths are `probe_root/<probe>`.
- pairs (`scores.csv` rows: fold, same, image_a, image_b, <method>...): the N different-person
  pairs with the highest score (false matches) and the N same-person pairs with the lowest (misses).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from occtool.errors import ConfigError, DataError

# best method first: the one whose hardest cases are most worth a look by default
METHOD_PREFERENCE = ("cosine_occ_matched", "qaconv_occ", "cosine_occ", "fused", "qaconv", "cosine")


@dataclass(frozen=True)
class PairSpec:
    probe: Path
    gallery: Path
    kind: str = ""  # "false match", "miss" or ""
    note: str = ""  # e.g. "rank 3, cosine_occ_matched 0.41"


def read_pairs_file(path: Path) -> list[PairSpec]:
    """Lines "probe gallery" (whitespace, tab or comma separated; '#' comments); relative paths
    are relative to the file's folder."""
    if not path.is_file():
        raise DataError(f"--pairs file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in line.replace(",", " ").replace("\t", " ").split(" ") if p]
        if len(parts) != 2:
            raise DataError(f"{path}:{n}: expected 'probe gallery', got {line!r}")
        out.append(PairSpec(*(p if Path(p).is_absolute() else path.parent / p for p in map(Path, parts))))
    if not out:
        raise DataError(f"{path}: no pairs in it")
    return out


def _read_run(run: Path) -> tuple[list[dict], dict]:
    import yaml

    scores, config = run / "scores.csv", run / "config.yaml"
    if not scores.is_file():
        raise DataError(f"--from-eval {run}: no scores.csv (an eval-gallery output folder is expected)")
    with scores.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DataError(f"{scores}: no rows")
    cfg = yaml.safe_load(config.read_text()) if config.is_file() else {}
    return rows, cfg or {}


def _choose_method(available: list[str], method: str | None, where: Path) -> str:
    if method is not None:
        if method not in available:
            raise ConfigError(f"--method {method}: not in {where} (it has {', '.join(available)})")
        return method
    return next((m for m in METHOD_PREFERENCE if m in available), available[0])


def _check_worst(worst: int, available: int, what: str) -> None:
    if worst > available:
        raise ConfigError(f"--worst {worst}: the run has only {available} {what}")


def pairs_from_eval(run: Path, *, worst: int, method: str | None = None) -> tuple[list[PairSpec], str]:
    """(the hardest false matches then the hardest misses, the method used); see the module doc."""
    rows, cfg = _read_run(run)
    if "method" in rows[0]:
        return _from_identification(run, rows, cfg, worst, method)
    if "same" in rows[0]:
        return _from_pairs(run, rows, worst, method)
    raise DataError(f"{run / 'scores.csv'}: neither identification nor pairs scores (columns {', '.join(rows[0])})")


def _from_pairs(run, rows, worst, method):
    fixed = {"fold", "same", "image_a", "image_b"}
    m = _choose_method([k for k in rows[0] if k not in fixed], method, run)
    same = [r for r in rows if r["same"] == "1"]
    diff = [r for r in rows if r["same"] != "1"]
    _check_worst(worst, min(len(same), len(diff)), "same-person or different-person pairs")
    fm = sorted(diff, key=lambda r: -float(r[m]))[:worst]
    miss = sorted(same, key=lambda r: float(r[m]))[:worst]
    return ([PairSpec(Path(r["image_a"]), Path(r["image_b"]), "false match", f"{m} {float(r[m]):.3f}") for r in fm]
            + [PairSpec(Path(r["image_a"]), Path(r["image_b"]), "miss", f"{m} {float(r[m]):.3f}") for r in miss]), m


def _gallery_image(root: Path, identity: str) -> Path:
    folder = root / identity
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    if not files:
        raise DataError(f"gallery image of {identity!r} not found under {root}")
    return files[0]


def _from_identification(run, rows, cfg, worst, method):
    m = _choose_method(list(dict.fromkeys(r["method"] for r in rows)), method, run)
    if not cfg.get("gallery_root") or not cfg.get("probe_root"):
        raise DataError(f"{run / 'config.yaml'}: gallery_root and probe_root are needed to find the images")
    groot, proot = Path(cfg["gallery_root"]), Path(cfg["probe_root"])
    mine = [r for r in rows if r["method"] == m]
    known = [r for r in mine if r["in_gallery"] == "True"]
    _check_worst(worst, len(known), f"probes with a gallery identity for {m}")
    wrong = sorted((r for r in mine if r["top1_identity"] != r["identity"]), key=lambda r: -float(r["top1_score"]))
    miss = sorted(known, key=lambda r: float(r["genuine_score"]))
    out = [PairSpec(proot / r["probe"], _gallery_image(groot, r["top1_identity"]), "false match",
                    f"{r['identity']} taken for {r['top1_identity']}, {m} {float(r['top1_score']):.3f}")
           for r in wrong[:worst]]
    out += [PairSpec(proot / r["probe"], _gallery_image(groot, r["identity"]), "miss",
                     f"rank {r['rank']}, {m} {float(r['genuine_score']):.3f}") for r in miss[:worst]]
    return out, m
