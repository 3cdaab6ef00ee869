"""Pictures of what a model believes is visible, and of why two faces match.

- `regions`: face regions of the 7x7 map (eyes / nose / lower) and their statistics.
- `overlay`: visibility heat overlays and contact-sheet mosaics (numpy).
- `figures`: per-face map panels and contact sheets; `save_figure` (atomic, closes).
- `correspondence`: QAConv's top-k location correspondences and the visibility-matched score's
  per-location contributions (they sum to the score).
- `pair_figure`: the two-face explanation figure.
- `training_panel`: the per-epoch panel of fixed validation faces `train` can write.
- `maps.run_maps`, `pairs.run_pairs`: what `occtool visualize-occlusion maps|pair` call.
Builders return matplotlib Figures (Agg) and never write; the caller saves.
"""

from occtool.visualize.config import MapsConfig, PairConfig
from occtool.visualize.correspondence import (
    Correspondences,
    MatchedBreakdown,
    location_similarity,
    matched_contributions,
    qaconv_correspondences,
    top_correspondences,
)
from occtool.visualize.figures import FaceMaps, contact_sheet, maps_panel, save_figure
from occtool.visualize.maps import VisualResult, run_maps
from occtool.visualize.overlay import heat_overlay, upsample_cells
from occtool.visualize.pair_figure import pair_figure
from occtool.visualize.pairs import run_pairs
from occtool.visualize.pick import PairSpec, pairs_from_eval, read_pairs_file
from occtool.visualize.regions import REGION_NAMES, region_summary, region_visibility, worst_order
from occtool.visualize.training_panel import predict_visibility, save_training_panel, training_panel

__all__ = [
    "Correspondences",
    "FaceMaps",
    "MapsConfig",
    "MatchedBreakdown",
    "PairConfig",
    "PairSpec",
    "REGION_NAMES",
    "VisualResult",
    "contact_sheet",
    "heat_overlay",
    "location_similarity",
    "maps_panel",
    "matched_contributions",
    "pair_figure",
    "pairs_from_eval",
    "predict_visibility",
    "qaconv_correspondences",
    "read_pairs_file",
    "region_summary",
    "region_visibility",
    "run_maps",
    "run_pairs",
    "save_figure",
    "save_training_panel",
    "top_correspondences",
    "training_panel",
    "upsample_cells",
    "worst_order",
]
