"""Occlusion synthesis: occluders that return an occluded face and its exact visibility.

Every occluder is called as `occ(image uint8 RGB [H, W, 3], *, landmarks=None | [5, 2],
rng=np.random.Generator) -> OcclusionResult(image, visibility float32 [H, W] (1 visible),
occluder, occlusion_class, detail)`; without landmarks the canonical 112x112 ArcFace template
(scaled to the image) is used, i.e. aligned crops.

- occluders (`occtool.augment.occluders`, one file per family, registered: `list_occluders()`,
  `create_occluder(name, config)`, `occluder_class(name)`):
  opaque: MedicalMask (MaskTheFace templates), Rectangles, Sunglasses, Hand, Scarf, RealMask (the
  templates with real colours, fit slack, face lighting, soft edges, straps; weight 0 by default);
  transparent: Eyeglasses, Steam, Liquid, Visor (partial visibility where the face shows through)
- image degradations after occlusion (`occtool.augment.degrade`, `SynthesisConfig.degrade`, off
  by default): low resolution, blur, colour jitter, noise, JPEG
- OcclusionSynthesizer(config=SynthesisConfig()) picks one per image; feature_mask() gives the
  feature-resolution (7x7) area mean; OccludedFaceDataset wraps it all for training (torch);
  augment_tree() is `occtool augment`.
"""

from occtool.augment.base import (
    OCCLUSION_CLASSES,
    FaceFrame,
    Occluder,
    OcclusionResult,
    composite,
    feature_mask,
    keypoint_visibility,
    read_visibility_png,
)
from occtool.augment.batch import augment_tree, derive_seed, read_manifest
from occtool.augment.degrade import DegradeConfig, Degradation
from occtool.augment.config import (
    OCCLUDER_NAMES,
    OPAQUE_OCCLUDERS,
    TRANSPARENT_OCCLUDERS,
    AugmentConfig,
    MedicalMaskConfig,
    OccluderWeights,
    RealMaskConfig,
    RectanglesConfig,
    SynthesisConfig,
    TransparentConfig,
)
from occtool.augment.occluders import (
    MASK_TYPES,
    Eyeglasses,
    Hand,
    Liquid,
    MedicalMask,
    RealMask,
    Rectangles,
    Scarf,
    Steam,
    Sunglasses,
    Visor,
    create_occluder,
    list_occluders,
    occluder_class,
    register_occluder,
)
from occtool.augment.synth import OcclusionSynthesizer, build_occluder

__all__ = [
    "OCCLUSION_CLASSES",
    "OCCLUDER_NAMES",
    "OPAQUE_OCCLUDERS",
    "TRANSPARENT_OCCLUDERS",
    "MASK_TYPES",
    "AugmentConfig",
    "DegradeConfig",
    "Degradation",
    "Eyeglasses",
    "FaceFrame",
    "Hand",
    "Liquid",
    "MedicalMask",
    "MedicalMaskConfig",
    "OccludedFaceDataset",
    "Occluder",
    "OccluderWeights",
    "OcclusionResult",
    "OcclusionSynthesizer",
    "RealMask",
    "RealMaskConfig",
    "Rectangles",
    "RectanglesConfig",
    "Scarf",
    "Steam",
    "Sunglasses",
    "SynthesisConfig",
    "TransparentConfig",
    "Visor",
    "augment_tree",
    "build_occluder",
    "create_occluder",
    "list_occluders",
    "occluder_class",
    "register_occluder",
    "composite",
    "derive_seed",
    "feature_mask",
    "keypoint_visibility",
    "read_manifest",
    "read_visibility_png",
]


def __getattr__(name: str):
    # torch is imported only when the Dataset is asked for (the batch workers never need it)
    if name == "OccludedFaceDataset":
        from occtool.augment.dataset import OccludedFaceDataset

        return OccludedFaceDataset
    raise AttributeError(f"module 'occtool.augment' has no attribute {name!r}")
