"""The LFW `pairs.txt` format and finding its images on disk.

Format: a header line `<n_folds> <n>` (View 1 files have a single number `<n>`: one fold),
then per fold n same-person lines `name i j` followed by n different-person lines
`name1 i name2 j` (whitespace separated). Image `i` of `name` is
`<root>/<name>/<name>_<i:04d>.<ext>`; the extension is whatever the file has (an aligned or
occluded copy may have changed it), so the file is looked up by stem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from occtool.data.images import IMAGE_SUFFIXES
from occtool.errors import DataError


@dataclass(frozen=True)
class Pair:
    name_a: str
    index_a: int
    name_b: str
    index_b: int
    same: bool
    fold: int  # 0-based fold id

    @property
    def rel_stem_a(self) -> str:
        return f"{self.name_a}/{self.name_a}_{self.index_a:04d}"

    @property
    def rel_stem_b(self) -> str:
        return f"{self.name_b}/{self.name_b}_{self.index_b:04d}"


DEFAULT_FOLDS = 10


def read_pairs(path: str | Path, *, folds_of: int = DEFAULT_FOLDS) -> list[Pair]:
    """Parse a pairs file; DataError naming the line on any malformed content.

    With the LFW header the folds are the file's. A plain list (no header: same-person
    `name i j` and different-person `name1 i name2 j` lines in any order and number) is split
    into `folds_of` folds deterministically: the k-th of n same-person lines goes to fold
    k * folds_of // n, the different-person lines likewise (balanced, file order kept); fewer
    folds when there are fewer lines of a kind than `folds_of`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file not found: {path}")
    from occtool.io import read_text

    text = read_text(path, what="pairs file", error=DataError, latin1_fallback=True)  # Latin-1 names happen
    lines = [(no, line.split()) for no, line in enumerate(text.splitlines(), start=1)]
    lines = [(no, toks) for no, toks in lines if toks]
    if not lines:
        raise DataError(f"pairs file {path} is empty")
    head_no, head = lines[0]
    if not all(t.lstrip("-").isdigit() for t in head):
        return _plain_list(path, lines, folds_of)
    nums = [int(t) for t in head]
    if len(nums) == 2:
        n_folds, n = nums
    elif len(nums) == 1:
        n_folds, n = 1, nums[0]
    else:
        raise DataError(f"pairs file {path}, line {head_no}: expected a header '<folds> <pairs per fold>'")
    body = lines[1:]
    if n_folds < 1 or n < 1 or len(body) != 2 * n * n_folds:
        raise DataError(
            f"pairs file {path}: header says {n_folds} fold(s) x (2 x {n}) = {2 * n * n_folds} pairs, "
            f"found {len(body)} pair lines"
        )
    pairs: list[Pair] = []
    for k, (no, toks) in enumerate(body):
        fold, within = divmod(k, 2 * n)
        pair = _pair(path, no, toks, fold)
        if pair.same != (within < n):
            kind = "same-person 'name i j'" if within < n else "different-person 'name1 i name2 j'"
            raise DataError(f"pairs file {path}, line {no}: expected a {kind} line, got {' '.join(toks)!r}")
        pairs.append(pair)
    return pairs


def _pair(path: Path, no: int, toks: list[str], fold: int) -> Pair:
    try:
        if len(toks) == 3:
            return Pair(toks[0], int(toks[1]), toks[0], int(toks[2]), True, fold)
        if len(toks) == 4:
            return Pair(toks[0], int(toks[1]), toks[2], int(toks[3]), False, fold)
    except ValueError:
        raise DataError(f"pairs file {path}, line {no}: image numbers must be integers: {' '.join(toks)!r}") from None
    raise DataError(f"pairs file {path}, line {no}: expected 'name i j' (same person) or 'name1 i name2 j' "
                    f"(different people), got {' '.join(toks)!r}")


def _plain_list(path: Path, lines, folds_of: int) -> list[Pair]:
    """A headerless list: balanced deterministic folds (see read_pairs)."""
    if folds_of < 1:
        raise DataError(f"--folds-of: expected a number >= 1, got {folds_of}")
    pairs = [_pair(path, no, toks, 0) for no, toks in lines]
    counts = {kind: sum(p.same == kind for p in pairs) for kind in (True, False)}
    n_folds = max(1, min([folds_of] + [c for c in counts.values() if c]))
    seen = {True: 0, False: 0}
    out = []
    for p in pairs:
        k = seen[p.same]
        seen[p.same] += 1
        out.append(Pair(p.name_a, p.index_a, p.name_b, p.index_b, p.same, k * n_folds // counts[p.same]))
    return out


def parse_folds(text: str | None, n_folds: int | None = None) -> list[int] | None:
    """'6-10' / '1,3,5-7' (1-based, as people say them) -> sorted 0-based fold ids; None -> None."""
    if text is None or str(text).strip() == "":
        return None
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if a > b:
                    raise ValueError
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise DataError(f"folds {text!r}: expected numbers and ranges like 6-10 or 1,3,5") from None
    if min(out) < 1 or (n_folds is not None and max(out) > n_folds):
        limit = f"1..{n_folds}" if n_folds else ">= 1"
        raise DataError(f"folds {text!r}: fold numbers must be in {limit}")
    return sorted(k - 1 for k in out)


def people_in_folds(pairs: list[Pair], folds: list[int] | None) -> set[str]:
    """Every name that appears in a pair of the given (0-based) folds (all folds when None)."""
    wanted = None if folds is None else set(folds)
    names: set[str] = set()
    for p in pairs:
        if wanted is None or p.fold in wanted:
            names.add(p.name_a)
            names.add(p.name_b)
    return names


def disk_spellings(name: str) -> list[str]:
    """A name read from a text file, then how a file system may spell it: its Latin-1 bytes as
    Python shows an undecodable file name (surrogate escapes). A Latin-1 pairs file against
    UTF-8 folders matches as is (it was decoded as Latin-1)."""
    out = [name]
    try:
        alt = os.fsdecode(name.encode("latin-1"))
    except UnicodeEncodeError:
        return out
    return out + [alt] if alt != name else out


def resolve_image_root(root: str | Path) -> Path:
    """An LFW-style root may hold the identities directly or under `images/` (our data sets and
    `augment` output do the latter); return the folder that holds the identity folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    images = root / "images"
    if images.is_dir():
        return images
    return root


class StemIndex:
    """Find `<root>/<rel_stem>.<any image ext>` quickly (one directory listing per identity)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._dirs: dict[str, dict[str, Path]] = {}

    def _listing(self, identity: str) -> dict[str, Path]:
        if identity not in self._dirs:
            d = self.root / identity
            entries: dict[str, Path] = {}
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    if f.name.startswith(".") or not f.is_file():
                        continue
                    entries.setdefault(f.name, f)  # the exact file name
                    cur = entries.get(f.stem)
                    # by stem; a real image suffix wins over anything else with the same stem
                    if cur is None or (cur.suffix.lower() not in IMAGE_SUFFIXES and f.suffix.lower() in IMAGE_SUFFIXES):
                        entries[f.stem] = f
            self._dirs[identity] = entries
        return self._dirs[identity]

    def find(self, rel_stem: str) -> Path | None:
        rel = Path(rel_stem)
        identity = rel.parts[0] if len(rel.parts) > 1 else ""
        for spelling in disk_spellings(identity) if identity else []:
            name = spelling + rel.name[len(identity):] if rel.name.startswith(identity) else rel.name
            listing = self._listing(spelling)
            hit = listing.get(name)
            if hit is None and Path(name).suffix:  # given with an extension: try its stem too
                hit = listing.get(Path(name).stem)
            if hit is not None:
                return hit
        return None


def locate_pair_images(pairs: list[Pair], root_a: str | Path, root_b: str | Path | None = None):
    """(paths_a, paths_b, missing): image paths of every pair; the second image from root_b if given.

    missing lists the relative stems not found; the caller decides (an error by default).
    """
    idx_a = StemIndex(resolve_image_root(root_a))
    idx_b = StemIndex(resolve_image_root(root_b)) if root_b is not None else idx_a
    paths_a: list[Path | None] = []
    paths_b: list[Path | None] = []
    missing: list[str] = []
    for p in pairs:
        a = idx_a.find(p.rel_stem_a)
        b = idx_b.find(p.rel_stem_b)
        if a is None:
            missing.append(f"{idx_a.root}/{p.rel_stem_a}.*")
        if b is None:
            missing.append(f"{idx_b.root}/{p.rel_stem_b}.*")
        paths_a.append(a)
        paths_b.append(b)
    return paths_a, paths_b, missing
