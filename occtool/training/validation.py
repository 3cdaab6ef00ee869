"""Gallery/probe identification during and after training (held-out people only).

A protocol (first image of each person = gallery, the others probes; `occtool.evaluation`'s
split) is scored with the clean probes and with the probes occluded by a fixed-seed synthesizer
(``masked``: by default MaskTheFace medical masks; optionally one more probe set per occluder
family, ``occ_<family>``). The gallery stays clean. Methods, side by side:

- ``cosine_pretrained``: the initial (pretrained) backbone's embedding, the baseline;
- ``cosine``: the trained model's plain embedding embed(fm) (= the occlusion-aware embedding
  without its occlusion weighting);
- ``cosine_occ``: the occlusion-aware embedding embed(fm * v) with the predicted visibility;
- ``cosine_occ_matched``: the same embedding, but for each (probe, gallery) pair both sides
  are embedded through the joint visibility v_p * v_g (the gallery face is read only where the
  probe face is visible, and vice versa: QAConv's "both must be visible" weighting applied to
  the global embedding). Computed exactly and cheaply because the output layer is affine before
  its normalisation (checked at run time; the method is skipped otherwise):
  raw(fm * w) = b + sum_r w[r] c[r] with per-location contributions c[r];
- ``qaconv`` / ``qaconv_occ``: the trained QAConv matcher without / with occlusion weighting;
- ``fused``: z(cosine) + w * z(qaconv_occ), each z-normalised per probe over the gallery.

Embeddings are the flip-summed raw embeddings, re-normalised (each view with its own predicted
visibility), as `occtool.evaluation.extract_features` computes them; QAConv uses the unflipped
maps. Metrics: rank-1/5 and TAR at FAR 1e-3/1e-2 (genuine = each probe against its own
identity's gallery entry, impostors = against all others), from `occtool.evaluation.metrics`.
Occlusion maps: mean IoU of the occluded cells (visibility < 0.5) with the ground truth on the
occluded probes, and the mean predicted visibility on clean images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from occtool.data.images import ImageRecord, file_sha1, read_image_rgb
from occtool.evaluation import Scoring, features_from_maps, identify_features
from occtool.evaluation.metrics import DEFAULT_FARS, far_key, occlusion_iou
from occtool.matching.visibility_matched import DEFAULT_VISIBILITY_EXPONENT, is_affine, output_layer_bias
from occtool.progress import ProgressFn, report

_MATCHED_EXTRA_BYTES = 256 * 2**20  # cosine_occ_matched on a non-heavy probe set only below this
_REPORTED = ("rank1", "rank5", *(far_key(f) for f in DEFAULT_FARS))  # the metrics each method logs


def _family_index(family: str) -> int:
    """A family's index in the occluder list: part of its probe set's seed (so the order is fixed)."""
    from occtool.augment import list_occluders

    return list_occluders().index(family)


@dataclass
class EvalSet:
    name: str
    gallery_images: np.ndarray  # uint8 [G, H, W, 3]
    gallery_ids: np.ndarray  # [G] identity index
    probe_images: np.ndarray  # uint8 [P, H, W, 3] clean probes
    masked_images: np.ndarray  # uint8 [P, H, W, 3] the same probes occluded
    masked_fmask: np.ndarray  # float32 [P, h, w] ground-truth visibility at map resolution
    probe_true: np.ndarray  # [P] column of the probe's identity in the gallery
    info: dict = field(default_factory=dict)
    # more occluded probe sets: name -> (images uint8 [P, H, W, 3], ground truth [P, h, w])
    extra: dict = field(default_factory=dict)
    # filled by `prepare` (feature maps of the frozen body, float16, unflipped and flipped; with
    # `with_stage`, the last stage's inputs of the unflipped images [N, C_s, H, W], for the QAConv branch)
    feats: dict | None = None
    stage: dict | None = None
    baseline: dict | None = None


def _load(records: Sequence[ImageRecord], size_hw) -> np.ndarray:
    out = []
    for r in records:
        img = read_image_rgb(r.path)
        if img.shape[:2] != tuple(size_hw):
            from occtool.models import resize_to

            img = resize_to(img, size_hw)
        out.append(img)
    return np.stack(out) if out else np.zeros((0, *size_hw, 3), np.uint8)


def build_eval_set(
    name: str,
    records: Sequence[ImageRecord] | None = None,
    *,
    gallery: Sequence[ImageRecord] | None = None,
    probes: Sequence[ImageRecord] | None = None,
    occlusion_cfg,
    seed: int,
    max_probes: int | None = None,
    size_hw=(112, 112),
    map_size=(7, 7),
    families: Sequence[str] | None = None,
) -> EvalSet:
    """From records (split first image -> gallery) or an explicit gallery/probes split."""
    from occtool.errors import DataError
    from occtool.evaluation.leakage import check_content_leakage
    from occtool.evaluation.protocol import split_first_image

    if records is not None:
        gallery, probes = split_first_image(list(records))
    gallery, probes = list(gallery or []), list(probes or [])
    if max_probes is not None and len(probes) > max_probes:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(probes), size=max_probes, replace=False))
        probes = [probes[i] for i in keep]
    if not gallery or not probes:
        raise DataError(f"{name}: the identification protocol needs a gallery and probes (people with >= 2 images)")
    check_content_leakage([file_sha1(r.path) for r in gallery], [file_sha1(r.path) for r in probes],
                          [str(r.path) for r in gallery], [str(r.path) for r in probes])
    col = {}
    for j, r in enumerate(gallery):
        col.setdefault(r.identity, j)
    probes = [r for r in probes if r.identity in col]
    g_img = _load(gallery, size_hw)
    p_img = _load(probes, size_hw)
    masked, fmask = _occlude(p_img, occlusion_cfg, map_size, key=lambda i: [seed, i])
    extra = {}
    for family in families or []:  # the family's index is part of the seed: one stream per family
        extra[f"occ_{family}"] = _occlude(p_img, family_config(occlusion_cfg, family), map_size,
                                          key=lambda i, f=family: [seed, i, 1 + _family_index(f)])
    info = {"gallery_images": len(gallery), "gallery_identities": len(col), "probe_images": len(probes)}
    return EvalSet(
        name=name,
        gallery_images=g_img,
        gallery_ids=np.arange(len(gallery)),
        probe_images=p_img,
        masked_images=masked,
        masked_fmask=fmask,
        probe_true=np.array([col[r.identity] for r in probes], dtype=np.int64),
        info=info,
        extra=extra,
    )


def _occlude(images: np.ndarray, cfg, map_size, *, key) -> tuple[np.ndarray, np.ndarray]:
    """Occluded copies [N, H, W, 3] and their ground-truth visibility at map resolution [N, h, w]
    (image i drawn with the seed sequence `key(i)`)."""
    from occtool.augment import OcclusionSynthesizer, feature_mask

    synth = OcclusionSynthesizer(config=cfg)
    imgs, masks = [], []
    for i, img in enumerate(images):
        res = synth(img, rng=np.random.default_rng(np.random.SeedSequence(key(i))))
        imgs.append(res.image)
        masks.append(feature_mask(res.visibility, map_size))
    return np.stack(imgs), np.stack(masks).astype(np.float32)


def family_config(base, family: str):
    """`base` (a SynthesisConfig) with every occluder weight 0 but `family`'s, nothing clean."""
    import dataclasses

    from occtool.augment import OccluderWeights, list_occluders
    from occtool.errors import ConfigError

    names = list_occluders()
    if family not in names:
        raise ConfigError(f"unknown occluder family {family!r}; valid: {', '.join(names)}")
    weights = OccluderWeights(**{n: (1.0 if n == family else 0.0) for n in names})
    return dataclasses.replace(base, weights=weights, keep_clean=0.0)


# ---------------------------------------------------------------------------------------------
# features


@torch.inference_mode()
def body_maps(backbone, images: np.ndarray, *, device, batch_size: int, progress: ProgressFn = None,
              done: int = 0, total: int = 0, with_stage: bool = False):
    """uint8 [N, H, W, 3] -> (feature maps, feature maps of the mirrors), float16 CPU; with_stage:
    (maps, mirror maps, the last stage's inputs of the images)."""
    from occtool.models import preprocess

    backbone.eval()
    a, b, st = [], [], []
    for s in range(0, len(images), batch_size):
        x = preprocess(images[s: s + batch_size], backbone.input_spec, device=device)
        if with_stage:
            stage, fm = backbone.split_features(x)
            st.append(stage.to("cpu", torch.float16))
        else:
            fm = backbone.features(x)
        a.append(fm.to("cpu", torch.float16))
        b.append(backbone.features(torch.flip(x, dims=[3])).to("cpu", torch.float16))
        report(progress, done + min(s + batch_size, len(images)), total)
    return (torch.cat(a), torch.cat(b), torch.cat(st)) if with_stage else (torch.cat(a), torch.cat(b))


def prepare(evalset: EvalSet, backbone, *, device, batch_size: int, progress: ProgressFn = None,
            with_stage: bool = False) -> None:
    """Body feature maps of gallery, clean probes and occluded probes (and mirrors); with_stage:
    also the last stage's inputs (`evalset.stage`, for a model with the QAConv branch)."""
    sets = [("gallery", evalset.gallery_images), ("clean", evalset.probe_images), ("masked", evalset.masked_images)]
    sets += [(name, imgs) for name, (imgs, _) in evalset.extra.items()]
    total = sum(len(imgs) for _, imgs in sets)
    feats, stage = {}, {}
    done = 0
    for key, imgs in sets:
        maps = body_maps(backbone, imgs, device=device, batch_size=batch_size, progress=progress,
                         done=done, total=total, with_stage=with_stage)
        feats[key] = maps[:2]
        if with_stage:
            stage[key] = maps[2]
        done += len(imgs)
    evalset.feats = feats
    evalset.stage = stage if with_stage else None


def run_validation_set(run_dir, checkpoint: str = "model.pt", *, families: bool = False, device="cpu"):
    """A finished training run's validation set, rebuilt from its config.yaml (the same held-out
    people and seeded probe occlusion; `families`: one more probe set per occluder family of its
    test section) with the body maps of the run's own model -> (config, model, matcher, evalset).
    For choosing scoring options on validation people after training (benchmarks/sweep_*.py)."""
    from pathlib import Path

    from occtool.config import load_config
    from occtool.models import inference_copy, load_model_checkpoint
    from occtool.training.config import TrainConfig
    from occtool.training.data import build_train_data

    run_dir = Path(run_dir)
    cfg = load_config(TrainConfig, yaml_path=run_dir / "config.yaml", overrides=["data.feature_cache=false"])
    vc = cfg.validation
    ck = load_model_checkpoint(run_dir / checkpoint, map_location="cpu")
    model = ck.model.eval()
    ev = build_eval_set("validation", build_train_data(cfg).validation, occlusion_cfg=vc.probe_occlusion, seed=vc.seed,
                        max_probes=vc.max_probes, size_hw=tuple(model.input_spec.size_hw),
                        map_size=tuple(model.feature_size), families=cfg.test.families if families else None)
    prepare(ev, inference_copy(model.backbone, device), device=device, batch_size=vc.batch_size,
            with_stage=model.qaconv_branch)
    return cfg, model, ck.matcher, ev


def set_baseline(evalset: EvalSet, teacher, *, device) -> None:
    """Features of the pretrained backbone (computed once: the baseline does not train)."""
    assert evalset.feats is not None
    evalset.baseline = {k: features_from_maps(teacher, evalset.feats[k], device=device, with_maps=False)
                        for k in evalset.feats}


# ---------------------------------------------------------------------------------------------
# what to evaluate (the engine scores it)


def _scoring(model, matcher, *, matched: bool, fusion_weight: float, visibility_exponent: float, device) -> Scoring:
    bb = model.backbone
    affine = matched and is_affine(bb, device=device)
    return Scoring(matcher=matcher, matcher_trained=matcher is not None, has_visibility=True,
                   output_layer_affine=affine, matched_bias=output_layer_bias(bb, device=device).cpu() if affine else None,
                   views=2, fusion_weight=fusion_weight, visibility_exponent=visibility_exponent)


def _set_methods(key: str, scoring: Scoring, heavy_sets, n_images: int, dim: int, map_hw,
                 fused_matched: bool = False) -> list[str]:
    """The methods a probe set is scored with: QAConv on the heavy sets only; the matched embedding
    on those and on every other set whose [N, 2L, D] contributions are small; fused_matched (on
    request) where both of its parts are."""
    methods = ["cosine", "cosine_occ"]
    small = n_images * 2 * map_hw[0] * map_hw[1] * dim * 4 <= _MATCHED_EXTRA_BYTES
    if scoring.output_layer_affine and (key == "gallery" or key in heavy_sets or small):
        methods.append("cosine_occ_matched")
    if scoring.matcher is not None and (key == "gallery" or key in heavy_sets):
        methods += ["qaconv", "qaconv_occ", "fused"]
        if fused_matched and "cosine_occ_matched" in methods:
            methods.append("fused_matched")
    return methods


def _flat(res: dict, probe_key: str, per_method: dict, rename: dict | None = None) -> None:
    for method, block in per_method.items():
        for metric in _REPORTED:
            res[f"{probe_key}/{(rename or {}).get(method, method)}/{metric}"] = block[metric]


@torch.inference_mode()
def evaluate(
    evalset: EvalSet,
    *,
    model,
    matcher=None,
    device,
    fusion_weight: float = 1.0,
    visibility_exponent: float = DEFAULT_VISIBILITY_EXPONENT,
    backbone_for_maps=None,
    progress: ProgressFn = None,
    matched: bool = True,
    heavy_sets: Sequence[str] | None = None,
    fused_matched: bool = False,
) -> dict:
    """All methods on clean and occluded probe sets -> flat dict '<set>/<method>/<metric>'.

    Probe sets: clean, masked and the extra occluder families (occ_<name>). The feature maps
    come from `evalset.feats` (a frozen body); with a body that trains, pass `backbone_for_maps`
    (the current backbone) to recompute them. `heavy_sets`: the probe sets scored by QAConv
    (default: clean and masked); cosine_occ_matched scores them and every other set whose
    contributions take at most 256 MB (all of them with MobileFaceNet on LFW).
    `matched`: compute cosine_occ_matched at all; `fused_matched`: also score fused_matched. Scoring and metrics: `occtool.evaluation`.
    """
    model.eval()
    if matcher is not None:
        matcher.eval()
    branch = getattr(model, "branch", None) is not None
    if backbone_for_maps is not None:
        prepare(evalset, backbone_for_maps, device=device, batch_size=64, progress=progress, with_stage=branch)
    assert evalset.feats is not None
    if branch and matcher is not None and evalset.stage is None:
        raise ValueError("evaluate: a model with the QAConv branch needs prepare(..., with_stage=True)")
    heavy_sets = ("clean", "masked") if heavy_sets is None else tuple(heavy_sets)
    scoring = _scoring(model, matcher, matched=matched, fusion_weight=fusion_weight,
                       visibility_exponent=visibility_exponent, device=device)
    dim, map_hw = model.backbone.embedding_dim, evalset.feats["gallery"][0].shape[-2:]
    plan = {key: _set_methods(key, scoring, heavy_sets, len(maps[0]), dim, map_hw, fused_matched)
            for key, maps in evalset.feats.items()}
    jacobian = None  # once per evaluation (the output layer may have trained since the last one)
    if any("cosine_occ_matched" in methods for methods in plan.values()):
        from occtool.matching.visibility_matched import output_layer_jacobian

        jacobian = output_layer_jacobian(model.backbone, device=device)
    feats = {key: features_from_maps(model, maps, device=device, with_maps="qaconv" in plan[key],
                                     stage=None if evalset.stage is None else evalset.stage.get(key),
                                     with_contributions="cosine_occ_matched" in plan[key], jacobian=jacobian)
             for key, maps in evalset.feats.items()}
    res: dict = {}
    for key in (k for k in feats if k != "gallery"):
        if evalset.baseline is not None:
            _flat(res, key, _identify(evalset, evalset.baseline, key, Scoring(), ["cosine"], device),
                  {"cosine": "cosine_pretrained"})
        _flat(res, key, _identify(evalset, feats, key, scoring, plan[key], device))
    _occlusion_stats(res, evalset, feats)
    return res


def _identify(evalset: EvalSet, feats: dict, key: str, scoring: Scoring, methods, device) -> dict:
    """Probe set `key` against the gallery (one image per identity) through the evaluation engine."""
    return identify_features(feats[key], feats["gallery"], probe_ids=evalset.probe_true,
                             gallery_ids=np.asarray(evalset.gallery_ids), scoring=scoring, methods=methods,
                             device=device)


def _occlusion_stats(res: dict, evalset: EvalSet, feats: dict) -> None:
    """Occlusion maps against the ground truth of each occluded probe set, and on clean faces."""
    vis = {k: f.occlusion.flatten(1) for k, f in feats.items()}
    gt = {"masked": evalset.masked_fmask, **{name: m for name, (_, m) in evalset.extra.items()}}
    for key, mask in gt.items():
        iou, n_iou = occlusion_iou(vis[key].numpy(), mask)
        prefix = "occlusion/" if key == "masked" else f"occlusion/{key}/"
        res[prefix + "iou@0.5"] = iou
        res[prefix + "iou_images"] = n_iou
        res[prefix + "visibility_mean"] = float(vis[key].mean())
    res["occlusion/visibility_clean"] = float(torch.cat([vis["clean"], vis["gallery"]]).mean())
