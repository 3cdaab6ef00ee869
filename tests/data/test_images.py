import numpy as np
import pytest
from PIL import Image

from occtool.data import file_sha1, list_identity_tree, mask_path_for, read_image_rgb, read_landmarks, write_landmarks
from occtool.data.landmarks import ARCFACE_TEMPLATE_112, template_for_size
from occtool.errors import DataError
from tests.conftest import shared_or_skip


def _tree(tmp_path):
    root = tmp_path / "tree"
    for ident, n in (("bob", 2), ("amy", 1)):
        (root / ident).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(root / ident / f"{i}.png")
    (root / "amy" / "notes.txt").write_text("not an image")
    (root / "amy" / ".hidden.png").write_bytes(b"")
    return root


def test_list_identity_tree_sorted_and_filtered(tmp_path):
    recs = list_identity_tree(_tree(tmp_path))
    assert [str(r.relpath) for r in recs] == ["amy/0.png", "bob/0.png", "bob/1.png"]
    assert [r.identity for r in recs] == ["amy", "bob", "bob"]
    assert [r.identity for r in list_identity_tree(_tree(tmp_path / "b"), min_images=2)] == ["bob", "bob"]


def test_list_identity_tree_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list_identity_tree(tmp_path / "missing")
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        list_identity_tree(tmp_path / "empty")


def test_read_image_rgb_formats_and_errors(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "g.pgm")
    Image.fromarray(grey).save(tmp_path / "noext", format="GIF")
    for name in ("g.pgm", "noext"):
        rgb = read_image_rgb(tmp_path / name)
        assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rgb[..., 0], rgb[..., 2])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match="does not decode"):
        read_image_rgb(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="not found"):
        read_image_rgb(tmp_path / "missing.jpg")


def test_real_orl_and_yale_decode():
    orl = shared_or_skip("data", "orl")
    img = read_image_rgb(orl / "s1" / "1.pgm")
    assert img.shape == (112, 92, 3)
    yale = shared_or_skip("data", "yale")
    assert read_image_rgb(yale / "subject01.glasses").shape == (243, 320, 3)


def test_sha1_and_mask_path(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha1(tmp_path / "a") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert mask_path_for("/m", "bob/x.jpg").as_posix() == "/m/bob/x.png"


def test_landmarks_roundtrip_and_errors(tmp_path):
    pts = template_for_size((112, 112))
    write_landmarks(tmp_path / "l.csv", [("bob/0.png", pts, 0.99)])
    got = read_landmarks(tmp_path / "l.csv")
    assert np.allclose(got["bob/0.png"], ARCFACE_TEMPLATE_112, atol=1e-3)
    assert np.allclose(template_for_size((224, 224)), ARCFACE_TEMPLATE_112 * 2)
    (tmp_path / "bad.csv").write_text("path,x1\n")
    with pytest.raises(DataError, match="expected header"):
        read_landmarks(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text((tmp_path / "l.csv").read_text().splitlines()[0] + "\nbob/1.png,1,2\n")
    with pytest.raises(DataError, match="line 2"):
        read_landmarks(tmp_path / "short.csv")
    with pytest.raises(DataError, match="not found"):
        read_landmarks(tmp_path / "nope.csv")


def test_list_image_files_any_depth(tmp_path):
    from occtool.data.images import list_image_files

    for rel in ("flat.jpg", "amy/a.png", "amy/deeper/b.png", "subject01.glasses", ".hidden/x.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    recs = list_image_files(tmp_path)
    assert [str(r.relpath) for r in recs] == ["amy/a.png", "amy/deeper/b.png", "flat.jpg", "subject01.glasses"]
    assert [r.identity for r in recs] == ["amy", "amy/deeper", "", ""]
    with pytest.raises(DataError, match="not found"):
        list_image_files(tmp_path / "nope")
