"""`occtool augment SRC --out DST`: occluded copies of an identity tree with exact visibility masks."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, ForceOption, SetOption, build_config, info, progress_bar


def parse_occluders(text: str) -> dict[str, float]:
    """'medical_mask,sunglasses' or 'medical_mask=3,hand=1' -> {weights.<name>: w} for every
    occluder (unlisted ones get 0; a listed name without a weight keeps its default weight, or 1
    for an occluder that is off by default, such as real_mask)."""
    from occtool.augment.config import OCCLUDER_NAMES, OccluderWeights
    from occtool.errors import ConfigError

    defaults = OccluderWeights().as_dict()
    chosen: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if name == "all":
            chosen.update(defaults)
            continue
        if name not in OCCLUDER_NAMES:
            raise ConfigError(f"--occluders: unknown occluder {name!r}; valid: all, {', '.join(OCCLUDER_NAMES)}")
        try:
            chosen[name] = float(value) if sep else (defaults[name] or 1.0)
        except ValueError:
            raise ConfigError(f"--occluders: {item!r}: the weight must be a number") from None
        if chosen[name] < 0:
            raise ConfigError(f"--occluders: {item!r}: the weight must be >= 0")
    if not chosen:
        raise ConfigError("--occluders: name at least one occluder")
    return {f"weights.{n}": chosen.get(n, 0.0) for n in OCCLUDER_NAMES}


def _options(*, mask_size, image_format, templates, occluders, **given) -> dict:
    """The flags as AugmentConfig keys (None: not given)."""
    options: dict = {
        **given,
        "mask_size": [mask_size, mask_size] if mask_size is not None else None,
        "image_format": {"jpeg": "jpg"}.get(image_format, image_format) if image_format else None,
        "medical_mask.templates_dir": str(templates) if templates is not None else None,
    }
    if occluders is not None:
        options.update(parse_occluders(occluders))
    return options


def augment(
    src: Path = typer.Argument(..., help="Identity tree: SRC/<identity>/<image>."),
    out: Path = typer.Option(..., "--out", help="Output folder (images/, masks/, masks7/, manifest.jsonl, metrics.json)."),
    occluders: Optional[str] = typer.Option(
        None,
        "--occluders",
        help="Occluders to use and their relative weights: 'medical_mask,sunglasses' or 'medical_mask=3,hand=1' "
        "(unlisted: off). Names: medical_mask, rectangles, sunglasses, hand, scarf (opaque); eyeglasses, steam, "
        "liquid, visor (transparent). Default: all.",
    ),
    copies: Optional[int] = typer.Option(None, "--copies", help="Copies per source image, each its own draw [1]."),
    keep_clean: Optional[float] = typer.Option(None, "--keep-clean", help="Fraction of copies left unoccluded [0.1]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed; same seed -> byte-identical images, masks and manifest [0]."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes [2]; results do not depend on it."),
    landmarks: Optional[Path] = typer.Option(
        None, "--landmarks", help="Landmarks CSV (occtool align's format) for the occluders; default: the 112x112 template."
    ),
    missing_landmarks: Optional[str] = typer.Option(
        None, "--missing-landmarks", help="Image without a row in --landmarks: 'error' (default) or 'template'."
    ),
    mask_size: Optional[int] = typer.Option(None, "--mask-size", help="Side of the feature-resolution mask (.npy) [7]."),
    image_format: Optional[str] = typer.Option(
        None,
        "--format",
        help="Output images: 'png' (default), lossless, so pixels change exactly where the mask < 255; "
        "'jpg' (JPEG, --jpeg-quality) is smaller but compression also touches unmasked pixels.",
    ),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality", help="JPEG quality for --format jpg [95]."),
    templates: Optional[Path] = typer.Option(
        None, "--templates", help="MaskTheFace folder (masks.cfg, templates/); default ../shared/occluders/masktheface."
    ),
    config: Optional[Path] = ConfigOption,
    sets: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Occlude faces (medical masks, rectangles, sunglasses, hands, scarves, glasses, steam, liquid,
    visors) and write their exact visibility masks (PNG 255 = visible, 7x7 .npy) and a manifest."""
    from occtool.augment.batch import augment_tree
    from occtool.augment.config import AugmentConfig

    options = _options(copies=copies, keep_clean=keep_clean, seed=seed, workers=workers,
                       missing_landmarks=missing_landmarks, mask_size=mask_size, image_format=image_format,
                       jpeg_quality=jpeg_quality, templates=templates, occluders=occluders)
    cfg = build_config(AugmentConfig, config, sets, options)
    with progress_bar("augment") as progress:
        metrics = augment_tree(src, out, cfg, landmarks=landmarks, force=force, progress=progress)
    per = ", ".join(f"{k} {v}" for k, v in metrics["per_occluder"].items())
    info(
        f"{metrics['outputs']} occluded images from {metrics['images_read']} sources in {metrics['seconds']:.1f}s "
        f"({metrics['images_per_s']} images/s, {cfg.workers} workers) -> {out}"
    )
    info(f"occluders: {per}")
    if metrics["images_skipped"]:
        info(f"[yellow]skipped {metrics['images_skipped']} unreadable images: see {out / 'skipped.txt'}[/yellow]")
