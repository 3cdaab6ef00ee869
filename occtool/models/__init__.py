"""Face backbones, the occlusion head and the combined FaceModel.

Backbones (registry `occtool.models.registry`: `create_backbone(name, *, weights=None)` (alias
`build_backbone`), `list_backbones()`, `default_weights(name)`; each architecture module
registers itself with `@register_backbone`, and is imported below so that it does):
- ``mobilefacenet``: MobileFaceNet, 128-d embedding, feature map 512 x 7 x 7 (conv2, after
  ReLU6); input RGB, ImageNet mean/std. Pretrained weights: `default_weights("mobilefacenet")`
  = ../shared/weights/mobilefacenet/mobilefacenet.pt (equal to the shipped ONNX model).
- ``ir18``, ``ir34``, ``ir50``, ``ir100``: IR-ResNets as in InsightFace arcface_torch and AdaFace,
  512-d embedding, feature map 512 x 7 x 7 (last stage). They load either published key layout
  (arcface_torch: input RGB; AdaFace: input BGR; both (x/255 - 0.5) / 0.5). No weights ship with
  occtool: pass your checkpoint as `weights=`.

Every backbone's forward of a preprocessed [B, 3, 112, 112] batch gives
`BackboneOutput(embedding [B, D] L2-normalised, norm [B, 1], feature_map [B, 512, 7, 7])`;
`features(x)` is the body only, `embed(feature_map)` the output layer only. Preprocessing
(size, channel order, mean/std) belongs to the backbone: `preprocess(images, backbone.input_spec)`.

`OcclusionHead` predicts visibility [B, 1, H, W] in [0, 1] from a feature map; `FaceModel` =
backbone + OcclusionHead (+ optional neck for QAConv matching maps). Checkpoints:
`save_model_checkpoint` / `load_model_checkpoint` (weights_only-safe, atomic).
`fuse_for_inference(model)` folds BatchNorms into convs for faster eval-only use.
"""

# The architectures: importing them registers them (order = list_backbones() order).
from occtool.models.mobilefacenet import MobileFaceNet  # isort: skip
from occtool.models.iresnet import IResNet  # isort: skip

from occtool.models.base import Backbone, BackboneOutput, l2_normalize
from occtool.models.checkpoint import LoadedCheckpoint, load_model_checkpoint, save_model_checkpoint
from occtool.models.face_model import FaceModel, FaceOutput
from occtool.models.fuse import fuse_for_inference, inference_copy
from occtool.models.keymap import detect_layout, from_native, to_native
from occtool.models.occlusion_head import OcclusionHead
from occtool.models.preprocess import DTypeError, InputSpec, preprocess, resize_to
from occtool.models.registry import build_backbone, create_backbone, default_weights, list_backbones, register_backbone
from occtool.models.weights import load_strict, read_state_dict

__all__ = [
    "Backbone",
    "BackboneOutput",
    "DTypeError",
    "FaceModel",
    "FaceOutput",
    "IResNet",
    "InputSpec",
    "LoadedCheckpoint",
    "MobileFaceNet",
    "OcclusionHead",
    "build_backbone",
    "create_backbone",
    "default_weights",
    "detect_layout",
    "from_native",
    "fuse_for_inference",
    "inference_copy",
    "l2_normalize",
    "list_backbones",
    "load_model_checkpoint",
    "load_strict",
    "preprocess",
    "read_state_dict",
    "register_backbone",
    "resize_to",
    "save_model_checkpoint",
    "to_native",
]
