"""Extraction, identification/pairs orchestration and the CLI on synthetic data with randomly
initialised models (no ../shared needed): bad images, cache reuse, leakage, missing identities,
empty gallery, every method of a checkpoint side by side."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from occtool.cli.app import run
from occtool.data.images import list_identity_tree
from occtool.errors import DataError
from occtool.evaluation.extract import extract_features
from occtool.evaluation.leakage import LeakageError
from occtool.evaluation import evaluate_gallery, load_eval_model

IDS = ("amy", "bob", "cat")


def _tree(root, n_per_id=3, seed=0, size=112):
    rng = np.random.default_rng(seed)
    for ident in IDS:
        base = rng.integers(0, 256, (size, size, 3))
        for i in range(n_per_id):
            noise = rng.integers(-20, 21, (size, size, 3))
            img = np.clip(base + noise, 0, 255).astype(np.uint8)
            (root / ident).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / ident / f"{ident}_{i + 1:04d}.png")
    return root


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    from occtool.models import build_backbone

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "mfn_random.pt"
    torch.save(build_backbone("mobilefacenet").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    from occtool.matching import QAConvMatcher
    from occtool.models import FaceModel, build_backbone, save_model_checkpoint

    torch.manual_seed(0)
    model = FaceModel(backbone=build_backbone("mobilefacenet"), neck_channels=64)
    # calibrate the BatchNorm statistics on random images (one cumulative pass): activations stay
    # O(1) through the random network, and the output layer's bias b = raw(0) is not 0
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(16, 3, 112, 112) * 2 - 1)
    model.eval()
    matcher = QAConvMatcher(num_features=64, height=7, width=7)
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_model_checkpoint(path, model=model, matcher=matcher, config={"note": "random"})
    return path


@pytest.fixture
def split(tmp_path):
    """gallery/ (first image per identity) and probes/ (the other two) trees of a synthetic set."""
    src = _tree(tmp_path / "src")
    gal, prb = tmp_path / "gallery", tmp_path / "probes"
    for ident in IDS:
        files = sorted((src / ident).iterdir())
        (gal / ident).mkdir(parents=True)
        (prb / ident).mkdir(parents=True)
        shutil.copy(files[0], gal / ident / files[0].name)
        for f in files[1:]:
            shutil.copy(f, prb / ident / f.name)
    return gal, prb


def test_extract_counts_bad_image_and_max_bad(tmp_path, random_weights):
    root = _tree(tmp_path / "t", n_per_id=1)
    (root / "bob" / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    recs = list_identity_tree(root)
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    feats = extract_features(recs, model=em.model, device="cpu", batch_size=2, with_maps=False)
    assert feats.ok_mask.tolist() == [True, True, False, True]  # amy, bob_0001, broken, cat
    assert feats.n_bad == 1 and "broken.jpg" in feats.errors[0]
    norms = torch.linalg.vector_norm(feats.embeddings, dim=1)
    assert torch.allclose(norms[feats.ok_mask], torch.ones(3), atol=1e-5)
    assert feats.match_maps is None
    with pytest.raises(DataError, match="max-bad 0"):
        extract_features(recs, model=em.model, device="cpu", batch_size=2, with_maps=False, max_bad=0)


def test_extract_cache_hits_and_flip(tmp_path, random_weights):
    root = _tree(tmp_path / "t", n_per_id=2, size=100)  # not 112: resized and counted
    recs = list_identity_tree(root)
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    key = em.cache_key(True)
    a = extract_features(recs, model=em.model, device="cpu", cache_dir=tmp_path / "c", model_key=key)
    assert a.cache_hits == 0 and a.n_resized == 6
    assert a.match_maps.shape == (6, 512, 7, 7)
    b = extract_features(recs, model=em.model, device="cpu", cache_dir=tmp_path / "c", model_key=key)
    assert b.cache_hits == 6 and b.n_resized == 6
    assert torch.equal(a.embeddings, b.embeddings) and torch.equal(a.match_maps, b.match_maps)
    # the flip key differs, and no-flip embeddings differ from flip-summed ones
    assert em.cache_key(False) != key
    c = extract_features(recs, model=em.model, device="cpu", flip=False, with_maps=False)
    assert not torch.allclose(a.embeddings, c.embeddings)
    # the maps come from the unflipped image whatever the flip setting
    d = extract_features(recs, model=em.model, device="cpu", flip=False)
    assert torch.allclose(a.match_maps, d.match_maps, atol=1e-5)


def test_empty_gallery_is_a_clear_error(tmp_path, random_weights, capsys):
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    probes = list_identity_tree(_tree(tmp_path / "p", n_per_id=1))
    with pytest.raises(DataError, match="gallery is empty"):
        evaluate_gallery([], probes, em=em)
    (tmp_path / "empty" / "amy").mkdir(parents=True)
    rc = run(["eval-gallery", "--gallery-root", str(tmp_path / "empty"), "--probe-root", str(tmp_path / "p"),
              "--backbone", "mobilefacenet", "--weights", str(random_weights), "--out", str(tmp_path / "o"),
              "--no-cache"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("error: gallery: no images found") and "Traceback" not in err


def test_leakage_same_image_renamed(split, random_weights):
    gal, prb = split
    shutil.copy(gal / "amy" / "amy_0001.png", prb / "amy" / "renamed.png")
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    with pytest.raises(LeakageError, match="byte-identical"):
        evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), em=em, methods=["cosine"])


def test_missing_identities_reported_and_bad_probe_counted(split, random_weights):
    gal, prb = split
    _tree(prb.parent / "extra", n_per_id=2, seed=5)
    shutil.copytree(prb.parent / "extra" / "amy", prb / "zed")  # an identity the gallery lacks
    (prb / "bob" / "corrupt.jpg").write_bytes(b"garbage")
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    with pytest.raises(DataError, match="failed to load"):
        evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), em=em, methods=["cosine"])
    res = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), em=em, methods=["cosine"], max_bad=1)
    c = res["metrics"]["counts"]
    assert c["bad_images"] == 1
    assert c["probes_without_gallery_identity"] == 2 and c["probes_with_gallery_identity"] == 6
    assert res["metrics"]["overlap"]["probe_identities_missing_examples"] == ["zed"]
    m = res["metrics"]["methods"]["cosine"]
    assert m["probes_identified"] == 6
    # impostors: 6 known probes x 2 other ids + 2 unknown probes x 3 ids
    assert m["n_impostor"] == 6 * 2 + 2 * 3 and m["n_genuine"] == 6


def test_cli_checkpoint_every_method(split, random_checkpoint, tmp_path):
    gal, prb = split
    out = tmp_path / "out"
    args = ["eval-gallery", "--gallery-root", str(gal), "--probe-root", str(prb), "--checkpoint",
            str(random_checkpoint), "--methods", "cosine,cosine_occ,cosine_occ_matched,qaconv,qaconv_occ,fused",
            "--threshold", "0.3", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--device", "cpu"]
    assert run(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "identification"
    assert list(m["methods"]) == ["cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ", "fused"]
    for block in m["methods"].values():
        for key in ("rank1", "rank5", "auc", "eer", "tar@far=1e-3", "tar@far=1e-2", "acc@threshold"):
            assert key in block
    assert m["counts"]["gallery_identities"] == 3 and m["counts"]["probe_images_used"] == 6
    for f in ("scores.csv", "roc.png", "cmc.png", "histograms.png", "config.yaml"):
        assert (out / f).is_file()
    assert m["counts"]["cache_hits"] == 0
    # a second run hits the cache (entries hold every output); --force needed for the same out dir
    args[args.index("--methods") + 1] = "cosine,cosine_occ"
    assert run(args) == 1
    assert run(args + ["--force"]) == 0
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["counts"]["cache_hits"] == 9
    assert m2["methods"]["cosine_occ"] == m["methods"]["cosine_occ"]


def test_shortlist_path_matches_full_when_k_covers_gallery(split, random_checkpoint):
    gal, prb = split
    em = load_eval_model(checkpoint=random_checkpoint)
    kw = dict(em=em, methods=["qaconv_occ", "cosine_occ_matched"], device="cpu")
    full = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), shortlist_k=0, **kw)
    short = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), shortlist_k=3, **kw)
    for method in kw["methods"]:
        f, s = full["metrics"]["methods"][method], short["metrics"]["methods"][method]
        assert f["rank1"] == s["rank1"] and f["rank5"] == s["rank5"]
        assert s["shortlist_k"] == 3 and s["impostors_sampled"]


def test_large_side_uses_memmapped_maps_and_auto_shortlist(split, random_checkpoint, monkeypatch):
    import occtool.evaluation.gallery_eval as run_mod

    gal, prb = split
    em = load_eval_model(checkpoint=random_checkpoint)
    kw = dict(em=em, methods=["qaconv", "cosine_occ_matched"], device="cpu")
    ref = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), shortlist_k=0, **kw)
    monkeypatch.setattr(run_mod, "AUTO_SHORTLIST_GALLERY", 2)  # 3 gallery / 6 probe images count as "large"
    monkeypatch.setattr(run_mod, "AUTO_SHORTLIST_K", 3)
    memmapped = []
    real_extract = run_mod.extract_features

    def spy(*a, **k):
        f = real_extract(*a, **k)
        memmapped.append(isinstance(f.match_maps, np.memmap) and isinstance(f.contributions, np.memmap))
        return f

    monkeypatch.setattr(run_mod, "extract_features", spy)
    big = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), **kw)
    assert memmapped == [True, True]  # gallery and probes: maps and contributions on disk
    assert big["metrics"]["shortlist_k"] == 3
    for method in kw["methods"]:
        assert big["metrics"]["methods"][method]["rank1"] == ref["metrics"]["methods"][method]["rank1"]
        rows_big = [r["top1_identity"] for r in big["rows"] if r["method"] == method]
        rb = [(r["top1_identity"], float(r["top1_score"])) for r in big["rows"] if r["method"] == method]
        rr = [(r["top1_identity"], float(r["top1_score"])) for r in ref["rows"] if r["method"] == method]
        assert [i for i, _ in rb] == [i for i, _ in rr], method
        np.testing.assert_allclose([v for _, v in rb], [v for _, v in rr], atol=1e-5)  # batched vs one probe
    assert any("cosine_occ_matched re-ranks" in n for n in big["metrics"]["notes"])


def test_backbone_only_methods(random_weights):
    em = load_eval_model(backbone="mobilefacenet", weights=random_weights)
    assert em.available_methods() == ["cosine", "qaconv"]
    from occtool.errors import OcctoolError
    from occtool.evaluation.methods import resolve_methods

    with pytest.raises(OcctoolError, match="cosine_occ_matched needs --checkpoint"):
        resolve_methods(["cosine_occ_matched"], em.scoring())
    with pytest.raises(OcctoolError, match="needs --checkpoint"):
        resolve_methods(["qaconv_occ"], em.scoring())
    with pytest.raises(OcctoolError, match="unknown scoring method"):
        resolve_methods(["nope"], em.scoring())


def test_cli_config_file_and_set_overrides(split, random_weights, tmp_path):
    import yaml

    gal, prb = split
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({"methods": ["cosine"], "backbone": "mobilefacenet", "weights": str(random_weights),
                                   "gallery_root": str(gal), "probe_root": str(prb), "cache": False}))
    out = tmp_path / "o"
    assert run(["eval-gallery", "--config", str(cfg), "--set", "flip=false", "--set", "fars=[0.1]",
                "--device", "cpu", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["flip"] is False and saved["methods"] == ["cosine"] and saved["fars"] == [0.1]
    m = json.loads((out / "metrics.json").read_text())
    assert m["flip"] is False and list(m["methods"]) == ["cosine"] and "tar@far=1e-1" in m["methods"]["cosine"]
    assert run(["eval-gallery", "--set", "nope=1", "--out", str(tmp_path / "o2")]) == 1


def test_pairs_mode_every_method_with_root_b(tmp_path, random_checkpoint):
    from occtool.evaluation import evaluate_pairs

    root = _tree(tmp_path / "a")
    occ = _tree(tmp_path / "b" / "images", seed=1)  # another tree (an "occluded copy")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2 2\namy 1 2\nbob 1 2\namy 1 bob 1\nbob 2 cat 1\n"
                     "cat 1 2\namy 2 3\ncat 3 amy 3\nbob 3 cat 2\n")
    em = load_eval_model(checkpoint=random_checkpoint)
    every = ["cosine", "cosine_occ", "cosine_occ_matched", "qaconv", "qaconv_occ", "fused"]
    res = evaluate_pairs(pairs, root, tmp_path / "b", em=em, methods=every, device="cpu")
    m = res["metrics"]
    assert list(m["methods"]) == every
    for block in m["methods"].values():
        assert {"acc_10fold", "acc_10fold_std", "auc", "eer", "tar@far=1e-3"} <= set(block)
        assert len(block["fold_accuracies"]) == 2
    assert m["counts"]["pairs_used"] == 8 and m["counts"]["images"] == 7 + 6  # distinct first + second images
    assert all(r["image_b"].startswith(str(tmp_path / "b" / "images")) for r in res["rows"])


def test_contributions_reproduce_the_embedding_when_all_visible(split, random_checkpoint):
    """Plumbing of cosine_occ_matched: per view and location, contributions + bias summed with
    weight 1 give the flip-summed raw embedding; view 0's visibility is the occlusion map."""
    from occtool.matching.visibility_matched import output_layer_bias

    gal, _ = split
    em = load_eval_model(checkpoint=random_checkpoint)
    assert "cosine_occ_matched" in em.available_methods()
    f = extract_features(list_identity_tree(gal), model=em.model, device="cpu", with_contributions=True)
    n, vl, d = f.contributions.shape
    assert (n, vl) == (3, 2 * 49) and f.visibility_views.shape == (3, 2 * 49)
    b = output_layer_bias(em.model.backbone.eval())
    assert b.norm() > 0.1 * f.contributions.float().sum(1).norm(dim=1).mean()  # the bias count matters
    raw = f.contributions.float().sum(1) + 2 * b
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=1), f.embeddings, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(f.visibility_views[:, :49], f.occlusion.flatten(1))
    # without flip TTA: one view
    f1 = extract_features(list_identity_tree(gal), model=em.model, device="cpu", with_contributions=True, flip=False)
    assert f1.contributions.shape[1] == 49
    raw1 = f1.contributions.float().sum(1) + b
    torch.testing.assert_close(torch.nn.functional.normalize(raw1, dim=1), f1.embeddings, rtol=1e-4, atol=1e-4)


def test_matched_method_without_flip(split, random_checkpoint):
    gal, prb = split
    em = load_eval_model(checkpoint=random_checkpoint)
    res = evaluate_gallery(list_identity_tree(gal), list_identity_tree(prb), em=em, methods=["cosine_occ_matched"],
                           flip=False, device="cpu")
    assert res["metrics"]["methods"]["cosine_occ_matched"]["probes_identified"] == 6
