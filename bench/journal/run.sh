#!/usr/bin/env bash
# What --journal costs: 5,000 trivial tasks at -j 8, with and without a
# journal, alternating in one run (see bench/README.md).
#   bash bench/journal/run.sh [RUNS] [TASKS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7}
tasks=${2:-5000}
cargo build --release -q -p agent33-cli
bin=$PWD/target/release/agent-33
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq 1 "$tasks" >"$work/list"

run() { # $1 = extra flags; prints wall seconds
  local start end
  rm -f "$work/journal.jsonl"
  start=$EPOCHREALTIME
  # shellcheck disable=SC2086
  "$bin" run -j 8 --output none -q --command true --artifacts-from "$work/list" $1 >/dev/null 2>&1
  end=$EPOCHREALTIME
  python3 -c "print($end - $start)"
}

without=() with=()
for _ in $(seq "$runs"); do
  without+=("$(run "")")
  with+=("$(run "--journal $work/journal.jsonl")")
done
lines=$(wc -l <"$work/journal.jsonl")
python3 - "$lines" "${without[*]}" "${with[*]}" <<'PY'
import statistics, sys
lines = int(sys.argv[1])
a = [float(x) for x in sys.argv[2].split()]
b = [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"load average: {open('/proc/loadavg').read().split()[0]}")
print("| run | median wall time | runs |")
print("|---|---|---|")
print(f"| without --journal | {ma:.3f} s | {len(a)} |")
print(f"| with --journal ({lines} records) | {mb:.3f} s | {len(b)} |")
print(f"\njournal cost: {100 * (mb / ma - 1):+.1f}% wall time")
PY
