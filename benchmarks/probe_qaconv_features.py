"""Which local features suit QAConv? Parameter-free QAConv (untrained head: the mean of the
pooled values) on the validation people of a training run, for several candidate maps: the raw
512x7x7 body maps, the run's trained neck maps, and the per-location contributions to the
pretrained embedding (raw and centred per location), with and without the predicted visibility.
An experiment probe for issue 15 (docs/experiments.md); it scores with `QAConvMatcher.score`.

    .venv/bin/python benchmarks/probe_qaconv_features.py RUN_DIR
"""
import sys, torch, numpy as np
from pathlib import Path
torch.set_num_threads(1)
from occtool.config import load_config
from occtool.models import inference_copy, load_model_checkpoint
from occtool.training import TrainConfig
from occtool.training.data import build_train_data
from occtool.training.multitask import build_models
from occtool.training.validation import build_eval_set, prepare
from occtool.evaluation import features_from_maps
from occtool.matching import QAConvMatcher
run = Path(sys.argv[1])
cfg = load_config(TrainConfig, yaml_path=run / "config.yaml", overrides=["data.feature_cache=false"])
data = build_train_data(cfg); dev = torch.device("cpu")
ck = load_model_checkpoint(run / "model.pt"); model = ck.model
teacher = inference_copy(build_models(cfg, len(data.identities), dev)[3], dev)
vc = cfg.validation
ev = build_eval_set("validation", data.validation, occlusion_cfg=vc.probe_occlusion, seed=vc.seed, size_hw=(112,112), map_size=(7,7))
prepare(ev, teacher, device=dev, batch_size=64)
feats = {k: features_from_maps(model, m, device=dev, with_maps=True, with_contributions=True) for k, m in ev.feats.items()}
def rank1(P, G, pv=None, gv=None, C=None):
    mt = QAConvMatcher(num_features=P.shape[1], height=7, width=7).eval()
    s = mt.score(P, G, pv, gv)
    return float((s.argmax(1).numpy() == ev.probe_true).mean())
def contrib_maps(f, center=None):
    c = torch.as_tensor(np.asarray(f.contributions))[:, :49].float()  # view 0: [N, L, D]
    if center is not None: c = c - center
    return c.permute(0, 2, 1).reshape(len(c), -1, 7, 7)
g = feats["gallery"]
mean_c = torch.as_tensor(np.asarray(g.contributions))[:, :49].float().mean(0)  # per-location mean contribution
for key in ("clean", "masked"):
    p = feats[key]
    raw = lambda k: ev.feats[k][0].float()
    print(key, "raw512", rank1(raw(key), raw("gallery")), "raw512_occ", rank1(raw(key), raw("gallery"), p.occlusion, g.occlusion),
          "neck", rank1(p.match_maps, g.match_maps), "contrib", rank1(contrib_maps(p), contrib_maps(g)),
          "contrib_occ", rank1(contrib_maps(p), contrib_maps(g), p.occlusion, g.occlusion),
          "contrib_centered_occ", rank1(contrib_maps(p, mean_c), contrib_maps(g, mean_c), p.occlusion, g.occlusion), flush=True)
