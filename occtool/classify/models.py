"""Occlusion-type classifiers: a registry (`create_classifier`, `list_classifiers`).

Every classifier maps the DESIGN piece 7 input, float32 [B, 3, 224, 224] = (x/255 - 0.5) / 0.5
RGB, to logits [B, 3] over CLASSES = (none, opaque, transparent), as `head(trunk(x))`:

- ``resnet18``: torchvision ResNet-18 with a 3-way fc (the design's choice); trained end to end.
- ``mfn_ms_head``: the same frozen MobileFaceNet read at three depths: the 28x28x64 map (after
  the first stage, 4x4 average-pooled), the 14x14x128 map (2x2 average-pooled) and the final
  512x7x7 map, concatenated to 704x7x7 before the same kind of head. Face-recognition features
  are trained to ignore glasses and haze; the shallower maps keep that texture.
- ``mobilenet_v3_small``: torchvision MobileNetV3-small with a 3-way last layer (cheap on CPU).
- ``mfn_head``: occtool's pretrained MobileFaceNet (frozen; the 224 input is 2x2 average-pooled
  to its 112x112 and renormalised to ImageNet statistics) and a small trained head on its
  512x7x7 feature map: 1x1 conv to 64 channels, BN, ReLU, dropout, linear over the 64x7x7
  map (the position matters: glasses sit on the eyes, masks on the mouth).

Nothing is downloaded: torchvision nets start random unless `backbone_weights` names a file
(a torchvision state dict; its classification layer is left out), mfn_head uses the shared
MobileFaceNet weights ("default").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from occtool.errors import CheckpointError, ConfigError

CLASSES = ("none", "opaque", "transparent")
_NAMES = ("mfn_head", "mfn_ms_head", "mobilenet_v3_small", "resnet18")


def list_classifiers() -> list[str]:
    """Names accepted by `create_classifier`."""
    return list(_NAMES)


class OcclusionClassifier(nn.Module):
    """trunk (optionally frozen) + head; forward(x [B, 3, 224, 224]) -> logits [B, 3].

    A frozen trunk stays in eval mode and out of the optimiser, so its outputs can be cached
    (`features`) and only the head trained (`classify_features`).
    """

    def __init__(self, *, arch: str, trunk: nn.Module, head: nn.Module, frozen_trunk: bool, options: dict | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.options = dict(options or {})  # create_classifier's keyword options, kept in checkpoints
        self.flip_average = bool(self.options.get("flip_average", False))
        self.classes = CLASSES
        self.trunk = trunk
        self.head = head
        self.frozen_trunk = bool(frozen_trunk)
        if self.frozen_trunk:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    def train(self, mode: bool = True) -> "OcclusionClassifier":
        super().train(mode)
        if self.frozen_trunk:
            self.trunk.eval()  # frozen BatchNorm statistics
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def classify_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.trunk(x))
        if self.flip_average:  # test-time augmentation: the face and its mirror
            logits = 0.5 * (logits + self.head(self.trunk(torch.flip(x, dims=[3]))))
        return logits


class _MfnTrunk(nn.Module):
    """[-1, 1] RGB 224x224 -> MobileFaceNet feature map [B, 512, 7, 7] (2x2 average pool to 112)."""

    def __init__(self, backbone) -> None:
        super().__init__()
        self.backbone = backbone
        spec = backbone.input_spec
        # (y * 0.5 + 0.5 - mean) / std = y * scale + shift
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.avg_pool2d(x, 2) * self.scale + self.shift
        return self.backbone.features(x)


class _MfnMultiScaleTrunk(_MfnTrunk):
    """[-1, 1] RGB 224x224 -> [B, 704, 7, 7]: MobileFaceNet's 28x28x64 (4x4 pooled), 14x14x128
    (2x2 pooled) and final 512x7x7 maps, concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.backbone.net
        x = nn.functional.avg_pool2d(x, 2) * self.scale + self.shift
        x = net.dw_conv(net.conv1(x))
        x28 = net.features[:5](x)  # [B, 64, 28, 28]
        x14 = net.features[5:12](x28)  # [B, 128, 14, 14]
        x7 = net.conv2(net.features[12:](x14))  # [B, 512, 7, 7]
        pool = nn.functional.avg_pool2d
        return torch.cat([pool(x28, 4), pool(x14, 2), x7], dim=1)


def _head(channels: int, width: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Dropout(0.2), nn.Flatten(), nn.Linear(width * 7 * 7, len(CLASSES)),
    )


def _mfn_backbone(backbone_weights):
    from occtool.models import build_backbone, default_weights

    weights = default_weights("mobilefacenet") if backbone_weights == "default" else backbone_weights
    return build_backbone("mobilefacenet", weights=weights)


def _mfn_head(backbone_weights, head_width: int) -> OcclusionClassifier:
    trunk = _MfnTrunk(_mfn_backbone(backbone_weights))
    return OcclusionClassifier(arch="mfn_head", trunk=trunk, head=_head(512, head_width), frozen_trunk=True)


def _mfn_ms_head(backbone_weights, head_width: int) -> OcclusionClassifier:
    trunk = _MfnMultiScaleTrunk(_mfn_backbone(backbone_weights))
    return OcclusionClassifier(arch="mfn_ms_head", trunk=trunk, head=_head(64 + 128 + 512, head_width), frozen_trunk=True)


def _load_torchvision(net: nn.Module, path, skip_prefix: str) -> None:
    """Load a torchvision state dict into net, except its classification layer."""
    from occtool.models.weights import load_strict, read_state_dict

    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(skip_prefix)}
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(skip_prefix)}
    if set(state) != set(own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise CheckpointError(f"{path}: not a torchvision state dict of this net (missing {missing[:3]}, unexpected {extra[:3]})")
    load_strict(net, {**net.state_dict(), **state}, what=str(path))


def _resnet18(backbone_weights, head_width: int) -> OcclusionClassifier:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if backbone_weights not in (None, "default"):
        _load_torchvision(net, backbone_weights, "fc.")
    head = nn.Linear(net.fc.in_features, len(CLASSES))
    net.fc = nn.Identity()
    return OcclusionClassifier(arch="resnet18", trunk=net, head=head, frozen_trunk=False)


def _mobilenet_v3_small(backbone_weights, head_width: int) -> OcclusionClassifier:
    from torchvision.models import mobilenet_v3_small

    net = mobilenet_v3_small(weights=None)
    if backbone_weights not in (None, "default"):
        _load_torchvision(net, backbone_weights, "classifier.3.")
    head = nn.Linear(net.classifier[3].in_features, len(CLASSES))
    net.classifier[3] = nn.Identity()
    return OcclusionClassifier(arch="mobilenet_v3_small", trunk=net, head=head, frozen_trunk=False)


def create_classifier(name: str, *, backbone_weights: str | Path | None = "default", head_width: int = 64,
                      flip_average: bool = False) -> OcclusionClassifier:
    """Build classifier `name` (see `list_classifiers`).

    backbone_weights: "default" (mfn_head: the shared MobileFaceNet; torchvision nets: random,
    nothing is downloaded), None (random), or a weights file for the backbone. head_width: the
    mfn heads' 1x1 conv channels (torchvision nets: 64 only). flip_average: forward averages the
    logits of the face and its mirror (2x the cost).
    """
    builders = {"mfn_head": _mfn_head, "mfn_ms_head": _mfn_ms_head, "mobilenet_v3_small": _mobilenet_v3_small, "resnet18": _resnet18}
    if name not in builders:
        raise ConfigError(f"model.arch: unknown classifier {name!r}; expected one of {', '.join(_NAMES)}")
    if backbone_weights not in (None, "default") and not Path(backbone_weights).is_file():
        raise ConfigError(f"model.backbone_weights: file not found: {backbone_weights}")
    if not (isinstance(head_width, int) and 1 <= head_width <= 1024) or (head_width != 64 and not name.startswith("mfn")):
        raise ConfigError(f"head_width: expected 1..1024 for the mfn heads (64 for torchvision nets), got {head_width!r}")
    model = builders[name](backbone_weights, head_width)
    model.options = {"head_width": head_width, "flip_average": bool(flip_average)}
    model.flip_average = bool(flip_average)
    return model
