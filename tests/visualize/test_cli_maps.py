import json

import numpy as np
import pytest
from PIL import Image

from occtool.cli.app import run
from tests.visualize.conftest import write_faces


def _maps(*args):
    return run(["visualize-occlusion", "maps", *map(str, args)])


def test_maps_with_manifest_writes_figures_metrics_and_truth(augment_like, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc = _maps(augment_like / "images", "--manifest", augment_like / "manifest.jsonl", "--checkpoint", checkpoint,
               "--out", out, "--worst", 2, "--region", "lower", "--max-panels", 3)
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["images_read"] == 5 and m["counts"]["with_ground_truth"] == 5
    assert set(m["per_occluder"]) == {"medical_mask", "none"}
    assert m["per_occluder"]["medical_mask"]["images"] == 3 and m["per_occluder"]["medical_mask"]["mean_true"] == pytest.approx(4 / 7)
    rows = (out / "maps.csv").read_text().splitlines()
    assert len(rows) == 6
    # the overall MAE is the mean of the per-face MAEs (same number of cells per face)
    maes = [float(r.split(",")[-1]) for r in rows[1:]]
    assert m["ground_truth"]["mae"] == pytest.approx(np.mean(maes), abs=1e-5)
    assert m["worst"]["by"] == "ground truth error" and len(m["worst"]["faces"]) == 2
    assert set(m["regions"]) >= {"eyes", "nose", "lower", "all"}
    sheet = Image.open(out / "contact_sheet.png")
    worst = Image.open(out / "worst_lower.png")
    assert sheet.size[0] > 3 * 96  # groups of 3 and 2: 3 columns and sheet.size[1] > 96 and worst.size[1] > 96
    panels = sorted((out / "panels").iterdir())
    assert len(panels) == 2  # the worst cases, capped by --max-panels 3
    w, h = Image.open(panels[0]).size
    assert w > 4 * 224 and h > 224  # face | predicted | truth | disagreement, 2x enlarged
    assert all(p.stat().st_size > 10_000 for p in [out / "contact_sheet.png", *panels])
    assert (out / "config.yaml").is_file()
    err = capsys.readouterr().err
    assert "IoU@0.5" in err and "lower" in err


def test_maps_flat_folder_and_files_without_truth(checkpoint, tmp_path, capsys):
    faces = write_faces(tmp_path / "flat", ["x.jpg", "y.png", "sub/z.png"])
    out = tmp_path / "out"
    assert _maps(tmp_path / "flat", "--images", faces[0], "--checkpoint", checkpoint, "--out", out,
                 "--group-by", "folder", "--worst", 2, "--expect", "occluded") == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["images_read"] == 4 and "ground_truth" not in m
    assert set(m["per_group"]) == {".", "sub"}
    assert m["worst"]["by"] == "expected occluded"
    vis = [f["lower_visibility"] for f in m["worst"]["faces"]]
    assert vis == sorted(vis, reverse=True)  # the most visible lower faces are the worst


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_maps_error_paths(augment_like, checkpoint, plain_weights, tmp_path, capsys):
    imgs = augment_like / "images"
    assert _maps(tmp_path / "nope", "--checkpoint", checkpoint, "--out", tmp_path / "o1") == 1
    assert "not found" in _err(capsys)
    assert _maps(imgs, "--checkpoint", plain_weights, "--out", tmp_path / "o2") == 1
    assert "not an occtool checkpoint" in _err(capsys)
    assert _maps(imgs, "--checkpoint", checkpoint, "--out", tmp_path / "o3", "--worst", 6, "--expect", "visible") == 1
    assert "--worst 6: only 5 faces" in _err(capsys)
    assert _maps(imgs, "--checkpoint", checkpoint, "--out", tmp_path / "o4", "--worst", 2) == 1
    assert "--expect" in _err(capsys)
    assert _maps(imgs, "--checkpoint", checkpoint, "--out", tmp_path / "o5", "--region", "chin") == 1
    assert "region" in _err(capsys)
    bad = tmp_path / "bad"
    write_faces(bad, ["ok.png"])
    (bad / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert _maps(bad, "--checkpoint", checkpoint, "--out", tmp_path / "o6") == 1
    assert "broken.jpg" in _err(capsys)
    assert _maps(bad, "--checkpoint", checkpoint, "--out", tmp_path / "o7", "--max-bad", 1) == 0
    other = tmp_path / "other.jsonl"
    other.write_text('{"output": "images/zed/z.png", "occluder": "hand"}\n')
    assert _maps(imgs, "--manifest", other, "--checkpoint", checkpoint, "--out", tmp_path / "o8") == 1
    assert "none of the images is listed" in _err(capsys)
    other.write_text("not json\n")
    assert _maps(imgs, "--manifest", other, "--checkpoint", checkpoint, "--out", tmp_path / "o9") == 1
    assert "not an augment manifest row" in _err(capsys)
    assert _maps(imgs, "--masks", tmp_path / "bad", "--checkpoint", checkpoint, "--out", tmp_path / "o10") == 1
    assert "mask not found" in _err(capsys)


def test_maps_unwritable_out(augment_like, checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # --out below a file cannot be created, whoever runs the test
    assert _maps(augment_like / "images", "--checkpoint", checkpoint, "--out", blocker / "out") == 1
    assert "cannot write there" in _err(capsys)


def test_maps_iou_and_mae_against_hand_computed_truth(augment_like, checkpoint, tmp_path, capsys):
    """--masks tree: the metrics equal IoU/MAE computed here by hand from the model's own maps."""
    from occtool.data.images import list_image_files
    from occtool.evaluation import extract_features, load_eval_model

    out = tmp_path / "out"
    assert _maps(augment_like / "images", "--masks", augment_like / "masks", "--checkpoint", checkpoint,
                 "--out", out, "--max-panels", 0) == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    recs = list_image_files(augment_like / "images")
    pred = extract_features(recs, model=load_eval_model(checkpoint=checkpoint).model, device="cpu", flip=False,
                            with_maps=False).occlusion.numpy()[:, 0]
    gt = np.ones((5, 7, 7))
    gt[[0, 2, 4], 4:] = 0.0  # masks of faces 0, 2, 4: rows 64-111 = map rows 4-6 occluded
    ious = []
    for p, g in zip(pred, gt):
        po, go = p < 0.5, g < 0.5
        union = (po | go).sum()
        if union:
            ious.append((po & go).sum() / union)
    assert m["ground_truth"]["iou@0.5"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert m["ground_truth"]["iou_images"] == len(ious)
    assert m["ground_truth"]["mae"] == pytest.approx(np.abs(pred - gt).mean(), abs=1e-6)
    assert m["regions"]["lower"]["mean_visibility"] == pytest.approx(pred[:, 4:].mean(), abs=1e-6)
    assert m["ground_truth"]["regions_true"]["lower"]["mean_visibility"] == pytest.approx(2 / 5)
    assert m["ground_truth"]["regions_true"]["lower"]["occluded_fraction"] == pytest.approx(3 / 5)
    assert "per_occluder" not in m and not (out / "panels").exists()
