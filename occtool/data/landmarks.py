"""5-point landmarks: the canonical ArcFace 112x112 template and the landmarks file format.

Landmarks file (written by `occtool align`, read by `occtool augment --landmarks`): CSV with a
header `path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5,score`, `path` relative to the image tree root
(`<identity>/<file>`), points in the pixel coordinates of that image, in the order left eye,
right eye, nose tip, left mouth corner, right mouth corner (left/right as seen in the image).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from occtool.errors import DataError

# Left eye, right eye, nose, left mouth, right mouth for a 112x112 aligned crop.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
HEADER = ["path"] + [f"{axis}{i}" for i in range(1, 6) for axis in ("x", "y")] + ["score"]


def template_for_size(size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """The template scaled to an (height, width) crop: [5, 2] float32 (x, y)."""
    h, w = size
    return ARCFACE_TEMPLATE_112 * np.array([w / 112.0, h / 112.0], dtype=np.float32)


def write_landmarks(path: str | Path, rows: list[tuple[str, np.ndarray, float]]) -> None:
    """rows: (relative path, points [5, 2], score). Written atomically."""
    import io

    from occtool.io import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(HEADER)
    for rel, pts, score in rows:
        pts = np.asarray(pts, dtype=np.float64).reshape(5, 2)
        writer.writerow([str(rel)] + [f"{v:.3f}" for v in pts.reshape(-1)] + [f"{float(score):.5f}"])
    atomic_write_text(path, buf.getvalue())


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """{relative path: points [5, 2] float32}; DataError on a missing file or malformed row."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"landmarks file not found: {path}")
    import io

    from occtool.io import read_text

    out: dict[str, np.ndarray] = {}
    with io.StringIO(read_text(path, what="landmarks file", error=DataError), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:11]] != HEADER[:11]:
            raise DataError(f"landmarks file {path}: expected header {','.join(HEADER)}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                pts = np.array([float(v) for v in row[1:11]], dtype=np.float32).reshape(5, 2)
            except ValueError:
                raise DataError(f"landmarks file {path}, line {lineno}: expected 10 numbers after the path") from None
            out[row[0]] = pts
    return out
