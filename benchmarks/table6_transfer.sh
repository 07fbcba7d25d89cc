#!/usr/bin/env bash
# Table 6 on the synthetic set, the speech development set and (given its folder) the smart-watch check set built
# by benchmarks/make_motion_set.py: every head alone and with RSKP, 3 seeds, quick recipe, model selection on
# held-out training videos (the test-selected row comes from the same runs, see benchmarks/table6_summary.py).
# Besides the four built-in heads (each with its recipe) it runs the example third-party heads of
# benchmarks/example_heads (mil, bas) with no recipe at all (--head-recipe none: what a head that declares nothing
# gets) and bas with its own recipe too, and pip-installs them (--no-deps, with this environment's setuptools, so
# offline too) when rskp does not list them.
# Two processes at a time, one thread each. Usage:
#   bash benchmarks/table6_transfer.sh OUT_DIR [DEV_ROOT] [MOTION_ROOT]
#   (DEV_ROOT: ../shared/data/japanesevowels-tal; MOTION_ROOT: none, the motion set is skipped;
#    EXAMPLE_HEADS=0 in the environment: built-in heads only, nothing installed)
set -euo pipefail
out=${1:?output folder}; dev=${2:-../shared/data/japanesevowels-tal}; motion=${3:-}
examples=${EXAMPLE_HEADS:-1}
mkdir -p "$out"
if [ "$examples" != 0 ]; then
    for h in mil bas; do  # ask rskp, not import: a module on the path without its entry point is not found
        python -c "import sys; from rskp_plugin.plugins import available_heads as a; sys.exit('$h' not in a())" \
            || python -m pip install --quiet --no-deps --no-build-isolation "$(dirname "$0")/example_heads/rskp-head-$h"
    done
fi
run() {  # DATA HEAD [RECIPE]
    local extra=() recipe=${3:-builtin}
    [ "$1" = dev ] && extra=(--data wtalc --data-root "$dev" --dataset-name JapaneseVowelsTAL)
    [ "$1" = motion ] && extra=(--data wtalc --data-root "$motion" --dataset-name BasicMotionsTAL)
    local name="$1-$2"; [ "$recipe" = builtin ] || name="$name-$recipe"
    OMP_NUM_THREADS=1 rskp-bench --head "$2" --seeds 3 --selection heldout --head-recipe "$recipe" --no-progress \
        "${extra[@]}" --output "$out/$name.json" > "$out/$name.log" 2>&1
}
sets=(synthetic dev)
[ -n "$motion" ] && sets+=(motion)
(for s in "${sets[@]}"; do run "$s" facnet; run "$s" stpn; [ "$examples" = 0 ] || run "$s" mil none; done) &
(for s in "${sets[@]}"; do run "$s" bm; run "$s" wum; [ "$examples" = 0 ] || { run "$s" bas none; run "$s" bas; }
 done) &
wait
python "$(dirname "$0")/table6_summary.py" "$out"/*.json
