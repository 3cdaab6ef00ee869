#!/usr/bin/env bash
# Issue 12's six acceptance numbers for one checkpoint, on REAL occluders (never trained on):
#   rwmfd_dev (aligned by `occtool align`): fraction of faces with lower-face (rows 4-6) visibility
#   < 0.5 (target >= 0.90) and upper-face (rows 1-2) mean visibility (>= 0.9); clean LFW: mean
#   visibility of the lower face (>= 0.95) and fraction read occluded there (<= 0.02); Yale: eye-row
#   (rows 1-2) mean visibility of *.glasses and *.noglasses (glasses must be lower).
#
#   RWMFD=dir LFW_CLEAN=dir YALE=dir bash benchmarks/occlusion_maps_real.sh CHECKPOINT OUT
#
# RWMFD: ../shared/data/rwmfd_dev aligned by `occtool align`; LFW_CLEAN: clean aligned LFW faces
# (e.g. 300 people of folds 6-10); YALE: ../shared/data/yale aligned, one folder per condition.
set -euo pipefail
CK=$1; O=$2
OCC=${OCC:-python -m occtool.cli.app}
mkdir -p "$O"
run() { $OCC visualize-occlusion maps "$@" --checkpoint "$CK" --force --max-panels 0 --sheet-max 48 2>&1 | grep -E "^error" || true; }
run "$RWMFD" --out "$O/rwmfd" --worst 24 --region lower --expect occluded
run "$LFW_CLEAN" --out "$O/lfw" --worst 24 --region lower --expect visible
run "$YALE" --out "$O/yale" --group-by folder --region eyes --expect visible
python - "$O" <<'PY'
import json, sys
o = sys.argv[1]
r = json.load(open(f"{o}/rwmfd/metrics.json"))["regions"]
c = json.load(open(f"{o}/lfw/metrics.json"))["regions"]
y = json.load(open(f"{o}/yale/metrics.json"))["per_group"]
row = {
    "rwmfd_lower_occ_frac": r["lower"]["occluded_fraction"], "rwmfd_lower_vis": r["lower"]["mean_visibility"],
    "rwmfd_upper_vis": r["eyes"]["mean_visibility"],
    "lfw_lower_vis": c["lower"]["mean_visibility"], "lfw_lower_occ_frac": c["lower"]["occluded_fraction"],
    "lfw_all_vis": c["all"]["mean_visibility"],
    "yale_eyes_glasses": y["glasses"]["eyes"]["mean_visibility"], "yale_eyes_noglasses": y["noglasses"]["eyes"]["mean_visibility"],
}
json.dump(row, open(f"{o}/summary.json", "w"), indent=1)
print(" ".join(f"{k}={v:.3f}" for k, v in row.items()))
PY
