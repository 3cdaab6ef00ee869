"""`MakeProtocolConfig`: the settings of `occtool make-protocol` (gallery/probe trees from an
identity tree; `occtool.evaluation.protocol.build_protocol` does the work)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from occtool.config import ConfigValueError, check_range

# '6-10', '1,3,5-7': 1-based fold numbers and ranges, as the LFW README writes them
_FOLDS = re.compile(r"\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*")


@dataclass
class MakeProtocolConfig:
    pairs: Optional[Path] = None  # pairs file whose folds select the people
    folds: Optional[str] = None  # e.g. "6-10" (1-based, as in the LFW README); needs pairs
    probe_source: Optional[Path] = None  # occluded copy of the tree: probes are read from it
    copy: bool = False  # copy files instead of symlinking them
    allow_missing: bool = False  # drop probes absent from probe_source instead of failing
    folds_of: int = 10  # folds of a plain-list pairs file (no LFW header), balanced same/different

    def __post_init__(self) -> None:
        check_range("folds_of", self.folds_of, lo=1)
        if self.folds is None:
            return
        if self.pairs is None:
            raise ConfigValueError("folds", "null unless pairs is set (the folds are those of a pairs file)", self.folds)
        text = str(self.folds)
        ranges = [[int(x) for x in part.split("-")] for part in text.replace(" ", "").split(",")] if _FOLDS.fullmatch(text) else []
        if not ranges or any(r[0] < 1 or r[0] > r[-1] for r in ranges):
            raise ConfigValueError("folds", "fold numbers >= 1 and ranges like 6-10 or 1,3,5-7", self.folds)


__all__ = ["MakeProtocolConfig"]
