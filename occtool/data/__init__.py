"""Data sets as folders of identities (`root/<identity>/<image>`) and image decoding."""

from occtool.data.images import (
    IMAGE_SUFFIXES,
    ImageRecord,
    file_sha1,
    list_identity_tree,
    mask_path_for,
    read_image_rgb,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageRecord",
    "file_sha1",
    "list_identity_tree",
    "mask_path_for",
    "read_image_rgb",
]
