"""Data sets as folders of identities (`root/<identity>/<image>`) and image decoding."""

from occtool.data.landmarks import ARCFACE_TEMPLATE_112, read_landmarks, template_for_size, write_landmarks
from occtool.data.images import (
    IMAGE_SUFFIXES,
    ImageRecord,
    file_sha1,
    list_identity_tree,
    mask_path_for,
    read_image_rgb,
)

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "read_landmarks",
    "template_for_size",
    "write_landmarks",
    "IMAGE_SUFFIXES",
    "ImageRecord",
    "file_sha1",
    "list_identity_tree",
    "mask_path_for",
    "read_image_rgb",
]
