"""5-point face alignment: Umeyama similarity to the ArcFace template, crops, and `occtool align`."""

from occtool.align.aligner import AlignedFace, FaceAligner, center_crop_face, center_crop_matrix, select_faces
from occtool.align.transform import (
    align_face,
    alignment_matrix,
    similarity_params,
    transform_points,
    umeyama,
    warp_face,
)
from occtool.align.tree import AlignConfig, AlignSummary, ImageResult, align_tree, output_name

__all__ = [
    "AlignConfig",
    "AlignSummary",
    "AlignedFace",
    "FaceAligner",
    "ImageResult",
    "align_face",
    "align_tree",
    "alignment_matrix",
    "center_crop_face",
    "center_crop_matrix",
    "output_name",
    "select_faces",
    "similarity_params",
    "transform_points",
    "umeyama",
    "warp_face",
]
