"""`occtool classify train|export|predict|evaluate`: the occlusion-type classifier (none / opaque /
transparent) that routes faces and video frames to the fast, mask-aware or slow path.
Thin adapters over `occtool.classify` (no torch at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from occtool.cli.common import ConfigOption, DeviceOption, ForceOption, SetOption, build_config, info, progress_bar

app = typer.Typer(
    help="Occlusion-type classifier (none / opaque / transparent): train, export to ONNX, predict and route.",
    no_args_is_help=True,
)


@app.command("train")
def train(
    out: Path = typer.Option(..., "--out", help="Run folder: model.pt (best), checkpoint.pt, history.csv, metrics.json, config.yaml."),
    data: Optional[Path] = typer.Option(None, "--data", help="occtool augment output (manifest.jsonl), a manifest file, or DIR/<class>/<image>."),
    arch: Optional[str] = typer.Option(None, "--arch", help="mfn_ms_head (default), mfn_head, mobilenet_v3_small, resnet18."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Backbone weights file, 'default' or 'none' (nothing is downloaded)."),
    test_pairs: Optional[Path] = typer.Option(None, "--test-pairs", help="LFW pairs.txt: people of --test-folds are the test set (scored once, at the end)."),
    test_folds: Optional[str] = typer.Option(None, "--test-folds", help="Test folds of --test-pairs [6-10]."),
    val_people: Optional[int] = typer.Option(None, "--val-holdout-people", help="Validation = this many training-side people, seeded [200]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Most epochs (early stopping on validation accuracy) [30]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint.pt."),
    config: Optional[Path] = ConfigOption,
    sets: Optional[list[str]] = SetOption,
    device: str = DeviceOption,
    force: bool = ForceOption,
) -> None:
    """Train the classifier on augment's faces; validate on held-out people every epoch (early
    stopping), score the test people once at the end."""
    from occtool.classify.config import ClassifyTrainConfig
    from occtool.errors import ConfigError
    from occtool.evaluation.classification import format_confusion
    if resume and force:
        raise ConfigError("--resume continues the run in --out; --force would overwrite it: choose one")
    if resume and not (out / "checkpoint.pt").is_file():
        raise ConfigError(f"--resume: no checkpoint.pt in {out}")
    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"
    options = {"data": str(data) if data is not None else None, "arch": arch, "backbone_weights": weights,
               "test_pairs_file": str(test_pairs) if test_pairs is not None else None, "test_folds": test_folds,
               "val_holdout_people": val_people,
               "epochs": epochs, "device": device if device != "auto" else None}
    cfg = build_config(ClassifyTrainConfig, config, sets, options)
    from occtool.classify.data import load_samples

    load_samples(cfg.data)  # a bad --data fails before anything is written
    from occtool.classify.train import train_classifier
    from occtool.io import output_folder

    with output_folder(out, command="classify train", force=force, cfg=cfg, resume=resume,
                       resume_hint=f"resume with: occtool classify train --out {out} --resume") as folder:
        with progress_bar("classify train") as progress:
            metrics = train_classifier(cfg, folder.path, resume=resume, progress=progress, log=info)
    info(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (validation accuracy)")
    for part in ("validation", "test"):
        rep = metrics[part]
        if rep is None:
            info("test: none (no test people configured)")
            continue
        recalls = ", ".join(f"{c} {v['recall']:.3f}" for c, v in rep["per_class"].items())
        info(f"{part} accuracy {rep['accuracy']:.4f} ({rep['n']} faces), recall: {recalls}")
        info(format_confusion(rep["confusion"], rep["classes"]))
    info(f"wrote {out}/model.pt, metrics.json ({metrics['seconds']['total_this_run'] / 60:.1f} min wall, "
         f"{metrics['cpu_seconds']['total_this_run'] / 60:.1f} min CPU)")


def _check_crops(check_data: Optional[Path], ckpt_config: dict, n: int = 32):
    """float32 [n, 3, 224, 224]: real crops, evenly spread over the check data's samples."""
    import numpy as np

    from occtool.classify.data import load_crops, load_samples
    from occtool.classify.geometry import to_input
    from occtool.errors import DataError

    source = check_data if check_data is not None else ckpt_config.get("data")
    if not source or not Path(source).exists():
        raise DataError("export checks ONNX against PyTorch on real crops: give --check-data (augment folder, manifest or class tree)")
    samples = load_samples(source)
    picks = np.linspace(0, len(samples) - 1, num=min(n, len(samples))).round().astype(int)
    picked = [samples[i] for i in picks]
    if len(picked) < 2:
        picked = picked * 2
    return to_input(load_crops(picked))


@app.command("export")
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Classifier checkpoint (model.pt of classify train)."),
    out: Path = typer.Option(..., "--out", help="ONNX file to write (dynamic batch); a .json with the check goes beside it."),
    check_data: Optional[Path] = typer.Option(None, "--check-data", help="Real faces for the PyTorch check [the checkpoint's training data]."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    force: bool = ForceOption,
) -> None:
    """Export to ONNX and check it against PyTorch on real crops (max probability difference < 1e-4)."""
    from occtool.classify.checkpoint import load_classifier
    from occtool.classify.export import export_onnx
    from occtool.errors import OcctoolError, OutputExistsError
    from occtool.io import atomic_write_json

    loaded = load_classifier(checkpoint)
    x = _check_crops(check_data, loaded.config)
    if out.exists() and not force:
        raise OutputExistsError(f"--out {out} exists; pass --force to overwrite")
    if out.is_dir():
        raise OcctoolError(f"--out {out} is a folder; give the .onnx file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = export_onnx(loaded.model, out, check_inputs=x, opset=opset)
        atomic_write_json(out.with_suffix(".json"), {"checkpoint": str(checkpoint), "arch": loaded.model.arch, **result})
    except OSError as exc:
        raise OcctoolError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    info(f"wrote {out} ({result['bytes'] / 1e6:.1f} MB, {loaded.model.arch}); onnxruntime vs PyTorch on {result['n']} "
         f"real crops: max probability difference {result['max_abs_prob_diff']:.2e}, argmax agreement {result['argmax_agree']:.3f}")


def _box_source(bbox: Optional[str], boxes: Optional[Path], whole_image: bool, cfg):
    from occtool.classify.predict import BoxesFile, DetectorBoxes, FixedBox, WholeImage, parse_bbox
    from occtool.errors import ConfigError

    chosen = [n for n, v in (("--bbox", bbox), ("--boxes", boxes), ("--whole-image", whole_image)) if v]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: choose one source of face boxes")
    if bbox:
        return FixedBox(parse_bbox(bbox)), "bbox"
    if boxes:
        return BoxesFile(boxes), "boxes file"
    if whole_image:
        return WholeImage(), "whole image (aligned crops)"
    return DetectorBoxes(score_threshold=cfg.score_threshold, max_faces=cfg.max_faces, runtime=cfg.runtime,
                         threads=cfg.threads, graph_dir=cfg.graph_dir or None), "RetinaFace detector"


def _predict_config(config, sets, every, min_confidence, fallback, batch_size, threads, runtime=None):
    from occtool.classify.config import PredictConfig

    options = {"every": every, "min_confidence": min_confidence, "fallback_route": fallback,
               "batch_size": batch_size, "threads": threads, "runtime": runtime}
    return build_config(PredictConfig, config, sets, options)


BboxOption = typer.Option(None, "--bbox", help="One face box x1,y1,x2,y2 (pixels) for every frame.")
BoxesOption = typer.Option(None, "--boxes", help="CSV source,frame,x1,y1,x2,y2 (source: the path as given or its file name).")
WholeOption = typer.Option(False, "--whole-image", help="Every image is one aligned face crop (the crop is the whole image).")
MinConfOption = typer.Option(None, "--min-confidence", help="Below this confidence a face takes the fallback route [0.5].")
FallbackOption = typer.Option(None, "--fallback", help="Route for low-confidence faces: fast, mask_aware, slow [mask_aware].")
BatchOption = typer.Option(None, "--batch-size", help="Faces per classifier call [32].")
ThreadsOption = typer.Option(None, "--threads", help="CPU threads of the classifier and the detector (0: OMP_NUM_THREADS, else the cores) [0].")
RuntimeOption = typer.Option(None, "--runtime", help="Classifier and detector runtime: torch, onnxruntime or auto (default: ONNX Runtime on the CPU; model.pt is exported to the graph cache and checked against PyTorch, else PyTorch).")


@app.command("predict")
def predict(
    inputs: list[Path] = typer.Argument(..., help="Images, folders (recursively) and/or videos (.mp4, .avi, .mov, ...)."),
    model: Path = typer.Option(..., "--model", help="Classifier: model.pt (PyTorch) or an exported .onnx (onnxruntime)."),
    out: Path = typer.Option(..., "--out", help="Folder: predictions.csv/.jsonl, frames.csv, metrics.json (routing report), config.yaml."),
    bbox: Optional[str] = BboxOption,
    boxes: Optional[Path] = BoxesOption,
    whole_image: bool = WholeOption,
    every: Optional[int] = typer.Option(None, "--every", help="Videos: classify every N-th frame (the others follow its route) [1]."),
    min_confidence: Optional[float] = MinConfOption,
    fallback: Optional[str] = FallbackOption,
    batch_size: Optional[int] = BatchOption,
    threads: Optional[int] = ThreadsOption,
    runtime: Optional[str] = RuntimeOption,
    config: Optional[Path] = ConfigOption,
    sets: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Classify each face (none / opaque / transparent), route it and report the route mix and the
    estimated time (per-path costs: --set costs.fast=0.5 costs.mask_aware=0.6 costs.slow=3)."""
    from occtool.classify.predict import (
        check_inputs, count_frames, expand_inputs, format_report, iter_frames, load_predictor, predict_frames,
        write_predictions,
    )
    from occtool.io import output_folder

    cfg = _predict_config(config, sets, every, min_confidence, fallback, batch_size, threads, runtime)
    paths = expand_inputs(inputs)
    check_inputs(paths)
    predictor = load_predictor(model, threads=cfg.threads, runtime=cfg.runtime, graph_dir=cfg.graph_dir or None)
    box_source, box_kind = _box_source(bbox, boxes, whole_image, cfg)
    with output_folder(out, command="classify predict", force=force, cfg=cfg) as folder:
        with progress_bar("classify predict") as progress:
            result = predict_frames(iter_frames(paths, every=cfg.every), predictor, box_source, cfg,
                                    progress=progress, total=count_frames(paths, cfg.every))
        write_predictions(folder.path, result)
        folder.write_metrics({"model": str(model), "boxes": box_kind, "inputs": [str(p) for p in inputs],
                              **result.report})
    info(format_report(result.report))
    info(f"wrote {out}/predictions.csv, predictions.jsonl, frames.csv, metrics.json")


@app.command("evaluate")
def evaluate(
    data: Path = typer.Option(..., "--data", help="Labelled faces: DIR/<none|opaque|transparent>/<image>, an augment folder or manifest."),
    model: Path = typer.Option(..., "--model", help="Classifier: model.pt or .onnx."),
    out: Path = typer.Option(..., "--out", help="Folder: predictions.csv (with labels), metrics.json (accuracy, confusion, recall)."),
    bbox: Optional[str] = BboxOption,
    boxes: Optional[Path] = BoxesOption,
    whole_image: bool = WholeOption,
    min_confidence: Optional[float] = MinConfOption,
    fallback: Optional[str] = FallbackOption,
    batch_size: Optional[int] = BatchOption,
    threads: Optional[int] = ThreadsOption,
    runtime: Optional[str] = RuntimeOption,
    config: Optional[Path] = ConfigOption,
    sets: Optional[list[str]] = SetOption,
    force: bool = ForceOption,
) -> None:
    """Accuracy, confusion matrix and per-class precision/recall on labelled faces (one per image)."""
    import csv
    import io

    from occtool.classify.data import load_samples
    from occtool.classify.evaluate import evaluate_samples
    from occtool.classify.predict import load_predictor
    from occtool.evaluation.classification import format_confusion
    from occtool.io import atomic_write_text, output_folder

    cfg = _predict_config(config, sets, None, min_confidence, fallback, batch_size, threads, runtime)
    samples = load_samples(data)
    predictor = load_predictor(model, threads=cfg.threads, runtime=cfg.runtime, graph_dir=cfg.graph_dir or None)
    box_source, box_kind = _box_source(bbox, boxes, whole_image, cfg)
    with output_folder(out, command="classify evaluate", force=force, cfg=cfg) as folder:
        with progress_bar("classify evaluate") as progress:
            metrics, rows = evaluate_samples(samples, predictor, box_source, cfg, progress=progress)
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(folder.path / "predictions.csv", buf.getvalue())
        folder.write_metrics({"model": str(model), "data": str(data), "boxes": box_kind, **metrics})
    acc = metrics["accuracy"]
    info(f"{metrics['n']} faces scored ({metrics['images_without_face']} images without a face): accuracy "
         f"{acc if acc is None else f'{acc:.4f}'}; recall: " + ", ".join(f"{c} {v['recall']:.3f}" for c, v in metrics["per_class"].items() if v["support"]))
    info(format_confusion(metrics["confusion"], metrics["classes"]))
