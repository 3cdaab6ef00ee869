#!/usr/bin/env bash
# The main job end to end (what `make demo` runs): the LFW masked-probe identification protocol.
#
#   SHARED=../shared OUT=runs/demo bash examples/lfw_masked_protocol.sh
#
# 1. mask every aligned LFW face with a MaskTheFace medical mask (occtool augment);
# 2. held-out protocol: people of folds 6-10 of pairs.txt, first image -> gallery, the others
#    -> probes, clean and masked (occtool make-protocol);
# 3. train the occlusion head (+ neck, QAConv head, output layer) on the OTHER people, starting
#    from the pretrained MobileFaceNet with its body frozen (occtool train, configs/lfw_real_masks.yaml);
# 4. evaluate the pretrained baseline (cosine) and every method of the trained model side by
#    side, clean and masked probes, and the masked LFW pairs (occtool eval-gallery).
#    Results: $OUT/eval_*/metrics.json; the acceptance comparison is eval_masked's
#    cosine_occ_matched against eval_pretrained_masked's cosine.
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${OUT:-runs/demo}
LFW="$SHARED/data/lfw_aligned112"
[ -d "$LFW/images" ] || { echo "error: $LFW/images not found (set SHARED=/path/to/shared)" >&2; exit 1; }
export OCCTOOL_SHARED="$SHARED"
CACHE="$OUT/feature_cache"
mkdir -p "$OUT"

occtool augment "$LFW/images" --out "$OUT/lfw_masked" --occluders medical_mask=1 --keep-clean 0 --seed 0 --force
occtool make-protocol "$LFW/images" --pairs "$LFW/pairs.txt" --folds 6-10 --out "$OUT/protocol_clean" --force
occtool make-protocol "$LFW/images" --pairs "$LFW/pairs.txt" --folds 6-10 \
    --probe-source "$OUT/lfw_masked/images" --out "$OUT/protocol_masked" --force

occtool train --config configs/lfw_real_masks.yaml --out "$OUT/train" --force \
    --set data.train_root="$LFW" --set data.exclude_pairs_file="$LFW/pairs.txt" \
    --set test.root="$LFW" --set test.pairs_file="$LFW/pairs.txt"

for split in clean masked; do
  occtool eval-gallery --gallery-root "$OUT/protocol_$split/gallery" --probe-root "$OUT/protocol_$split/probes" \
      --backbone mobilefacenet --methods cosine --cache-dir "$CACHE" --out "$OUT/eval_pretrained_$split" --force
  occtool eval-gallery --gallery-root "$OUT/protocol_$split/gallery" --probe-root "$OUT/protocol_$split/probes" \
      --checkpoint "$OUT/train/model.pt" --cache-dir "$CACHE" --out "$OUT/eval_$split" --force
done
occtool eval-gallery --pairs "$LFW/pairs.txt" --root "$LFW" --root-b "$OUT/lfw_masked/images" \
    --checkpoint "$OUT/train/model.pt" --cache-dir "$CACHE" --out "$OUT/eval_pairs_masked" --force
echo "done: $OUT/eval_{pretrained_clean,pretrained_masked,clean,masked,pairs_masked} (metrics.json each)"
