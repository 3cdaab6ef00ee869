"""`occtool make-protocol`: gallery/ and probes/ trees (+ protocol.json) from an identity tree.

First image by file name of each person -> gallery, the others -> probes; optionally only the
people of some folds of a pairs file; optionally the probes from an occluded copy of the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, ForceOption, SetOption, build_config, info


def make_protocol(
    src: Path = typer.Argument(..., help="Identity tree: SRC/<id>/<image> (or SRC/images/<id>/<image>)."),
    out: Path = typer.Option(..., "--out", help="Output folder: gallery/, probes/, protocol.json, config.yaml."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="Pairs file whose folds select the people."),
    folds: Optional[str] = typer.Option(None, "--folds", help="Folds of --pairs, 1-based, e.g. 6-10 or 1,3."),
    probe_source: Optional[Path] = typer.Option(None, "--probe-source", help="Occluded copy of SRC: probes are read from it (matched by relative path stem)."),
    folds_of: Optional[int] = typer.Option(None, "--folds-of", help="Folds for a plain-list pairs file (no header; balanced same/different per fold) [10]."),
    copy: Optional[bool] = typer.Option(None, "--copy/--symlink", help="Copy files instead of symlinking them (default symlinks)."),
    allow_missing: Optional[bool] = typer.Option(None, "--allow-missing/--no-allow-missing", help="Drop probes absent from --probe-source instead of failing."),
    config: Optional[Path] = ConfigOption,
    set_: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Build a gallery/probe protocol as two identity trees."""
    from occtool.data.protocol_config import MakeProtocolConfig
    from occtool.evaluation.protocol import build_protocol, write_protocol_trees
    from occtool.io import output_folder

    cfg = build_config(MakeProtocolConfig, config, set_, {
        "pairs": pairs, "folds": folds, "folds_of": folds_of, "probe_source": probe_source, "copy": copy, "allow_missing": allow_missing,
    })
    proto = build_protocol(src, pairs_file=cfg.pairs, folds=cfg.folds, probe_source=cfg.probe_source,
                           allow_missing=cfg.allow_missing, folds_of=cfg.folds_of)
    with output_folder(out, command="make-protocol", force=force, cfg=cfg) as folder:
        write_protocol_trees(proto, folder.path, copy=cfg.copy)
    i = proto.info
    info(
        f"gallery: {i['gallery_images']} images of {i['gallery_identities']} people; "
        f"probes: {i['probe_images']} images of {i['probe_identities']} people"
        + (f" (from {i['probe_source']})" if i.get("probe_source") else "")
    )
    info(f"wrote {out}/gallery, {out}/probes, protocol.json")
