#!/usr/bin/env bash
# The example tables and plots, rendered from the real smoke-scale records committed under runs/.
#   bash analysis/examples/regenerate.sh                  # render runs/ again into this folder (seconds)
#   RUNS=/tmp/runs bash analysis/examples/regenerate.sh --train
#                                                         # run the sweeps at budget smoke on --cluster local into
#                                                         # $RUNS first, then copy their records here (about 30 min
#                                                         # on 2 CPU cores, 1 torch thread per run)
# Only result.json and config.yaml are copied: no checkpoint, weights, log or cache.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=analysis/examples
BIN=${BIN:-.venv/bin}
SWEEPS=${SWEEPS:-loss_weight k_sweep probe}
if [ "${1:-}" = "--train" ]; then
  : "${RUNS:?set RUNS to a scratch runs root for --train}"
  # one torch thread per run: on a shared 2-core machine two threads spin-wait on each other
  export OMP_NUM_THREADS=1 SLURM_CPUS_PER_TASK=1
  for sweep in $SWEEPS; do
    "$BIN/mst-sweep" submit "$sweep" --budget smoke --cluster local --runs "$RUNS"
  done
  rm -rf "$HERE/runs"
  for sweep in $SWEEPS; do
    (cd "$RUNS" && find "${sweep}_smoke" -name result.json -o -name config.yaml) | while read -r file; do
      mkdir -p "$HERE/runs/$(dirname "$file")"
      cp "$RUNS/$file" "$HERE/runs/$file"
    done
  done
fi
[ -d "$HERE/runs" ] || { echo "error: no $HERE/runs; run with --train first" >&2; exit 2; }
# render from a scratch copy: the report writes its record cache beside the records
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$HERE/runs" "$scratch/runs"
for fmt in md latex csv; do
  "$BIN/mst-report" tables --runs "$scratch/runs" --test --format "$fmt" --out "$HERE"
done
"$BIN/mst-report" plot --runs "$scratch/runs" --out "$HERE"
