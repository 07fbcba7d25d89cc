#!/usr/bin/env bash
# Table 6 on the synthetic set, the speech development set and (given its folder) the smart-watch check set built
# by benchmarks/make_motion_set.py: every head alone and with RSKP, 3 seeds, quick recipe, model selection on
# held-out training videos (the test-selected row comes from the same runs, see benchmarks/table6_summary.py).
# Two processes at a time, one thread each. Usage:
#   bash benchmarks/table6_transfer.sh OUT_DIR [DEV_ROOT] [MOTION_ROOT]
#   (DEV_ROOT: ../shared/data/japanesevowels-tal; MOTION_ROOT: none, the motion set is skipped)
set -euo pipefail
out=${1:?output folder}; dev=${2:-../shared/data/japanesevowels-tal}; motion=${3:-}
mkdir -p "$out"
run() {  # DATA HEAD
    local extra=()
    [ "$1" = dev ] && extra=(--data wtalc --data-root "$dev" --dataset-name JapaneseVowelsTAL)
    [ "$1" = motion ] && extra=(--data wtalc --data-root "$motion" --dataset-name BasicMotionsTAL)
    OMP_NUM_THREADS=1 rskp-bench --head "$2" --seeds 3 --selection heldout --no-progress "${extra[@]}" \
        --output "$out/$1-$2.json" > "$out/$1-$2.log" 2>&1
}
sets=(synthetic dev)
[ -n "$motion" ] && sets+=(motion)
(for s in "${sets[@]}"; do run "$s" facnet; run "$s" stpn; done) &
(for s in "${sets[@]}"; do run "$s" bm; run "$s" wum; done) &
wait
python "$(dirname "$0")/table6_summary.py" "$out"/*.json
