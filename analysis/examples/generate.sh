#!/usr/bin/env bash
# Regenerate the example appendix tables checked in here, from a real run of every sweep at budget smoke
# (runs folders <sweep>_smoke; each table's title says "[smoke scale]"; its footnote names the sweep, preset and
# missing runs).
#   RUNS=runs bash analysis/examples/generate.sh          # after: mst-sweep submit <sweep> --budget smoke --cluster ...
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs}
REPORT=${REPORT:-.venv/bin/mst-report}
args=()
for sweep in k_sweep_smoke probe_smoke longer_training_smoke bert_smoke mask_ratio_smoke loss_weight_smoke; do
  if [ -d "$RUNS/$sweep" ]; then args+=(--sweep "$sweep"); else echo "skipping $sweep: no $RUNS/$sweep" >&2; fi
done
[ ${#args[@]} -gt 0 ] || { echo "error: no smoke sweep under $RUNS; run mst-sweep submit first" >&2; exit 2; }
for fmt in md latex; do
  "$REPORT" tables --runs "$RUNS" "${args[@]}" --format "$fmt" --out analysis/examples
done
