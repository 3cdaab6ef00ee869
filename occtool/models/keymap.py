"""State-dict key mapping for IR-ResNets: the two published layouts <-> occtool's modules.

occtool's `IResNetNet` uses arcface_torch's names, so the "arcface" layout maps to itself:
    conv1, bn1, prelu, layer{1-4}.{k}.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0,downsample.1},
    bn2, fc, features
The "adaface" layout (AdaFace `net.py`):
    input_layer.{0,1,2}                  <-> conv1, bn1, prelu
    body.{i}.res_layer.{0,1,2,3,4,5}     <-> layer{s}.{k}.{bn1,conv1,bn2,prelu,conv2,bn3}
    body.{i}.shortcut_layer.{0,1}        <-> layer{s}.{k}.downsample.{0,1}
    output_layer.{0,3,4}                 <-> bn2, fc, features   (1 = Dropout, 2 = Flatten)
where body index i runs over all blocks in order (stage s, block k within it).
Keys that do not map stay as they are, so strict loading reports them as unexpected.
A dict with arcface_torch names but AdaFace's structure (no layer1.0 shortcut weights, no
features.weight/bias: occtool's own "adaface"-variant state dict) is recognised as "adaface".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from occtool.errors import CheckpointError

# IR-ResNet blocks per stage, by depth: the network (occtool.models.iresnet) and its key layouts
# here both need them; they live here so that iresnet.py can import this module.
STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}

LAYOUTS = ("arcface", "adaface")

_ARCFACE_TOP = {"conv1", "bn1", "prelu", "layer1", "layer2", "layer3", "layer4", "bn2", "fc", "features", "dropout"}
_ADAFACE_TOP = {"input_layer", "body", "output_layer"}

_RES = {"0": "bn1", "1": "conv1", "2": "bn2", "3": "prelu", "4": "conv2", "5": "bn3"}
_RES_INV = {v: k for k, v in _RES.items()}
_IN = {"0": "conv1", "1": "bn1", "2": "prelu"}
_IN_INV = {v: k for k, v in _IN.items()}
_OUT = {"0": "bn2", "3": "fc", "4": "features"}
_OUT_INV = {v: k for k, v in _OUT.items()}


def detect_layout(keys) -> str | None:
    """'arcface', 'adaface', or None when the keys look like neither."""
    tops = [k.split(".", 1)[0] for k in keys]
    n_arc = sum(t in _ARCFACE_TOP for t in tops)
    n_ada = sum(t in _ADAFACE_TOP for t in tops)
    if n_arc == 0 and n_ada == 0:
        return None
    return "adaface" if n_ada > n_arc else "arcface"


def _block_index(depth: int) -> list[tuple[int, int]]:
    """body index i -> (stage 1..4, block k)."""
    return [(s + 1, k) for s, n in enumerate(STAGE_BLOCKS[depth]) for k in range(n)]


def stage_blocks_in(state: Mapping[str, torch.Tensor], layout: str) -> tuple[int, ...] | int | None:
    """What the weights hold: blocks per stage (arcface) or the total number of blocks (adaface)."""
    if layout == "arcface":
        counts = []
        for s in range(1, 5):
            idx = {int(m.group(1)) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
            counts.append(max(idx) + 1 if idx else 0)
        return tuple(counts)
    idx = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    return max(idx) + 1 if idx else None


def _depth_of(held, layout: str) -> int | None:
    for depth, blocks in STAGE_BLOCKS.items():
        if (layout == "arcface" and held == blocks) or (layout == "adaface" and held == sum(blocks)):
            return depth
    return None


def adaface_key_to_native(key: str, depth: int) -> str:
    parts = key.split(".")
    index = _block_index(depth)
    if parts[0] == "input_layer" and len(parts) > 2 and parts[1] in _IN:
        return ".".join([_IN[parts[1]]] + parts[2:])
    if parts[0] == "output_layer" and len(parts) > 2 and parts[1] in _OUT:
        return ".".join([_OUT[parts[1]]] + parts[2:])
    if parts[0] == "body" and len(parts) > 4 and parts[1].isdigit() and int(parts[1]) < len(index):
        s, k = index[int(parts[1])]
        if parts[2] == "res_layer" and parts[3] in _RES:
            return ".".join([f"layer{s}", str(k), _RES[parts[3]]] + parts[4:])
        if parts[2] == "shortcut_layer" and parts[3] in ("0", "1"):
            return ".".join([f"layer{s}", str(k), "downsample", parts[3]] + parts[4:])
    return key


def native_key_to_adaface(key: str, depth: int) -> str:
    parts = key.split(".")
    if parts[0] in _IN_INV and len(parts) > 1:
        return ".".join(["input_layer", _IN_INV[parts[0]]] + parts[1:])
    if parts[0] in _OUT_INV and len(parts) > 1:
        return ".".join(["output_layer", _OUT_INV[parts[0]]] + parts[1:])
    m = re.fullmatch(r"layer([1-4])", parts[0])
    if m and len(parts) > 3 and parts[1].isdigit():
        i = _block_index(depth).index((int(m.group(1)), int(parts[1])))
        if parts[2] in _RES_INV:
            return ".".join(["body", str(i), "res_layer", _RES_INV[parts[2]]] + parts[3:])
        if parts[2] == "downsample" and len(parts) > 4:
            return ".".join(["body", str(i), "shortcut_layer", parts[3]] + parts[4:])
    return key


def is_native_adaface(state: Mapping[str, torch.Tensor]) -> bool:
    """arcface_torch names but AdaFace's structure (occtool's own state dict of the "adaface" variant):
    no layer1.0 shortcut weights and a non-affine final BatchNorm1d."""
    return (
        "features.running_mean" in state
        and "features.weight" not in state
        and "features.bias" not in state
        and not any(k.startswith("layer1.0.downsample.") for k in state)
    )


def to_native(state: Mapping[str, torch.Tensor], *, depth: int, source: str = "weights") -> tuple[dict, str]:
    """Map an arcface_torch- or AdaFace-layout state dict to occtool's names -> (state, layout).

    CheckpointError when the keys look like neither layout, or hold an IR net of another depth.
    """
    layout = detect_layout(state.keys())
    if layout is None:
        raise CheckpointError(
            f"{source}: not an IR-ResNet state dict in the arcface_torch (conv1, layer1.0.bn1, ..., fc, features) "
            f"or AdaFace (input_layer, body.N.res_layer, output_layer) layout; first keys: {list(state)[:5]}"
        )
    held = stage_blocks_in(state, layout)
    found = _depth_of(held, layout)
    if found is not None and found != depth:
        raise CheckpointError(f"{source}: the weights are an ir{found} ({layout} layout), but ir{depth} was requested")
    if layout == "arcface":
        if is_native_adaface(state):
            return dict(state), "adaface"
        return dict(state), layout
    return {adaface_key_to_native(k, depth): v for k, v in state.items()}, layout


def from_native(state: Mapping[str, torch.Tensor], *, layout: str, depth: int) -> dict[str, torch.Tensor]:
    """occtool `IResNetNet` state dict -> the given published layout (the inverse of `to_native`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    if layout == "arcface":
        return dict(state)
    return {native_key_to_adaface(k, depth): v for k, v in state.items()}


__all__ = ["LAYOUTS", "detect_layout", "from_native", "is_native_adaface", "to_native"]
