"""ONNX export of a Backbone or FaceModel, checked against PyTorch.

The graph (opset `OPSET`, TorchScript exporter) takes one input and has a dynamic batch B:

    input         [B, 3, H_in, W_in] float32, preprocessed (`occtool.models.preprocess`)

and these outputs, in this order (`output_names(model)`):

    embedding     [B, D]         L2-normalised identity embedding
    norm          [B, 1]         its norm before normalisation
    feature_map   [B, C, H, W]   the body's output (the visibility-matched method's contributions
                                 are one product of it with the output layer's Jacobian)
    Backbone exported with stage=True only (a split body, `Backbone.split_features`):
    stage_map     [B, C_s, H, W] the last stage's input (what the QAConv branch reads)
    FaceModel only:
    occlusion     [B, 1, H, W]   predicted visibility in [0, 1]
    match_map     [B, C', H, W]  the QAConv neck's map (the feature map without a neck; with the
                                 QAConv branch, of the branch's own map)
    occ_embedding [B, D]         embed(feature_map * occlusion), L2-normalised
    occ_norm      [B, 1]         its norm

The model's input spec, backbone name and kind are stored in the file's metadata
(`read_metadata`). `export_onnx` writes the file atomically; `check_onnx` runs it in ONNX
Runtime beside PyTorch and raises `ExportError` when any output differs by more than `tol`.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from occtool.errors import OcctoolError

OPSET = 17
INPUT_NAME = "input"
BACKBONE_OUTPUTS = ("embedding", "norm", "feature_map")
FACE_OUTPUTS = BACKBONE_OUTPUTS + ("occlusion", "match_map", "occ_embedding", "occ_norm")
STAGE_OUTPUT = "stage_map"
DEFAULT_TOL = 1e-4


class ExportError(OcctoolError):
    """A model that cannot be exported, or whose exported graph disagrees with PyTorch."""


def is_face_model(model) -> bool:
    return hasattr(model, "backbone") and hasattr(model, "occlusion_aware_embedding")


def output_names(model, *, stage: bool = False) -> tuple[str, ...]:
    """The graph's outputs; `stage`: a Backbone's graph also gives its stage map (not a FaceModel's)."""
    if stage and is_face_model(model):
        raise ValueError("stage=True exports a Backbone's stage map; a FaceModel's graph has none")
    return FACE_OUTPUTS if is_face_model(model) else BACKBONE_OUTPUTS + ((STAGE_OUTPUT,) if stage else ())


class ExportGraph(nn.Module):
    """The exported computation as a module: preprocessed batch -> the outputs of the module doc
    (a tuple in `output_names` order). Also what the PyTorch side of `check_onnx` runs."""

    def __init__(self, model: nn.Module, *, stage: bool = False) -> None:
        super().__init__()
        output_names(model, stage=stage)  # a FaceModel with stage=True: ValueError
        self.model = model
        self.face = is_face_model(model)
        self.stage = stage

    def forward(self, x: torch.Tensor):
        backbone = self.model.backbone if self.face else self.model
        if self.face:
            fm, stage = self.model.body(x)
        elif self.stage:
            stage, fm = backbone.split_features(x)
        else:
            fm, stage = backbone.features(x), None
        emb, norm = backbone.embed(fm)
        if not self.face:
            return (emb, norm, fm, stage) if self.stage else (emb, norm, fm)
        occ = self.model.head(fm)
        occ_emb, occ_norm = self.model.occlusion_aware_embedding(fm, occ)
        return emb, norm, fm, occ, self.model.match_features(fm, stage), occ_emb, occ_norm


def _spec(model):
    return (model.backbone if is_face_model(model) else model).input_spec


def _metadata(model, stage: bool) -> dict[str, str]:
    backbone = model.backbone if is_face_model(model) else model
    return {
        "occtool_kind": "face_model" if is_face_model(model) else "backbone",
        "occtool_backbone": str(getattr(backbone, "name", "?")),
        "occtool_input_spec": json.dumps(_spec(model).to_dict()),
        "occtool_outputs": ",".join(output_names(model, stage=stage)),
        "occtool_opset": str(OPSET),
    }


@contextmanager
def _quiet():
    """Silence the exporter: Python warnings, and the C++ side's own dump of the graph on stdout
    when an operator is not supported (the ExportError says what failed, once)."""
    import sys
    import tempfile

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(sink.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = OPSET, stage: bool = False) -> Path:
    """Write `model` (a Backbone or FaceModel; left unchanged) as an ONNX graph to `path`; `stage`:
    a Backbone's graph with the `stage_map` output too.

    ExportError (with the exporter's reason) when the model cannot be exported."""
    graph = ExportGraph(copy.deepcopy(model).cpu().float(), stage=stage).eval()
    h, w = _spec(model).size_hw
    names = output_names(model, stage=stage)
    meta = _metadata(model, stage)
    return export_module(graph, path, example=torch.zeros(2, 3, h, w), output_names=names,
                         dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *names)}, metadata=meta,
                         what=meta["occtool_backbone"], opset=opset)


def export_module(module: nn.Module, path: str | Path, *, example: torch.Tensor, output_names, dynamic_axes: dict,
                  metadata: dict[str, str], what: str, opset: int = OPSET) -> Path:
    """Trace `module` (eval mode, one input named `INPUT_NAME`) to an ONNX file, atomically, with
    `metadata` in the file; ExportError naming `what` and the exporter's reason on failure."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=list(output_names),
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
        for k, v in metadata.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:  # the exporter raises many kinds; the user needs the reason, once
        tmp.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ExportError(f"cannot export {what} to ONNX: {reason}") from None
    return path


def read_metadata(path: str | Path) -> dict:
    """The occtool metadata of an exported file: kind, backbone, input_spec (dict), outputs, opset."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if "occtool_kind" not in meta:
        raise ExportError(f"{path}: not exported by occtool (no occtool metadata)")
    return {"kind": meta["occtool_kind"], "backbone": meta["occtool_backbone"],
            "input_spec": json.loads(meta["occtool_input_spec"]), "outputs": meta["occtool_outputs"].split(","),
            "opset": int(meta["occtool_opset"])}


@torch.no_grad()
def check_onnx(model: nn.Module, path: str | Path, inputs: torch.Tensor, *, tol: float = DEFAULT_TOL,
               threads: int = 1, stage: bool = False) -> dict[str, float]:
    """Run `inputs` [B, 3, H, W] (preprocessed) through the exported graph and through PyTorch;
    returns the max abs difference per output; ExportError when one exceeds `tol` or the file
    does not load back (`stage`: as given to `export_onnx`)."""
    from occtool.runtime.session import make_session

    graph = ExportGraph(copy.deepcopy(model).cpu().float(), stage=stage).eval()
    ref = graph(inputs.float().cpu())
    try:
        sess = make_session(path, threads=threads)
        got = sess.run(None, {INPUT_NAME: inputs.float().cpu().numpy()})
    except Exception as exc:
        raise ExportError(f"{path}: does not run in ONNX Runtime ({str(exc).strip().splitlines()[0]})") from None
    names = output_names(model, stage=stage)
    if len(got) != len(names):
        raise ExportError(f"{path}: {len(got)} outputs, expected {len(names)} ({', '.join(names)})")
    diffs = {n: float(np.abs(g - r.numpy()).max()) if g.size else 0.0 for n, g, r in zip(names, got, ref)}
    bad = {n: d for n, d in diffs.items() if not d <= tol}
    if bad:
        worst = ", ".join(f"{n} {d:.2e}" for n, d in bad.items())
        raise ExportError(f"exported graph disagrees with PyTorch beyond {tol:g}: {worst}")
    return diffs


__all__ = ["BACKBONE_OUTPUTS", "DEFAULT_TOL", "ExportError", "ExportGraph", "FACE_OUTPUTS", "INPUT_NAME", "OPSET",
           "STAGE_OUTPUT", "check_onnx", "export_module", "export_onnx", "is_face_model", "output_names", "read_metadata"]
