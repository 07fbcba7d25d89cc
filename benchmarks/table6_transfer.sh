#!/usr/bin/env bash
# Table 6 on the synthetic set and the speech development set: every head alone and with RSKP, 3 seeds, quick
# recipe, model selection on held-out training videos (the test-selected row comes from the same runs, see
# benchmarks/table6_summary.py). Two processes at a time, one thread each. Usage:
#   bash benchmarks/table6_transfer.sh OUT_DIR [DEV_ROOT]      (DEV_ROOT: ../shared/data/japanesevowels-tal)
set -euo pipefail
out=${1:?output folder}; dev=${2:-../shared/data/japanesevowels-tal}
mkdir -p "$out"
run() {  # DATA HEAD
    local extra=()
    [ "$1" = dev ] && extra=(--data wtalc --data-root "$dev" --dataset-name JapaneseVowelsTAL)
    OMP_NUM_THREADS=1 rskp-bench --head "$2" --seeds 3 --selection heldout --no-progress "${extra[@]}" \
        --output "$out/$1-$2.json" > "$out/$1-$2.log" 2>&1
}
(run synthetic facnet; run synthetic stpn; run dev facnet; run dev stpn) &
(run synthetic bm; run synthetic wum; run dev bm; run dev wum) &
wait
python "$(dirname "$0")/table6_summary.py" "$out"/*.json
