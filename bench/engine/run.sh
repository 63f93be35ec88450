#!/usr/bin/env bash
# Engine throughput and memory, side by side in one run (see bench/README.md).
#   bash bench/engine/run.sh [RUNS]
# Prints a Markdown table: median tasks/s and peak RSS of each implementation
# for each scenario, and the ratios the targets are stated in.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
cargo build --release -q -p agent33-bench-engine
bin=${CARGO_TARGET_DIR:-target}/release/agent33-bench-engine
# The default setup of a library user: the system allocator.
sys_target=${CARGO_TARGET_DIR:-target}/bench-sysalloc
CARGO_TARGET_DIR=$sys_target cargo build --release -q -p agent33-bench-engine --no-default-features
sysbin=$sys_target/release/agent33-bench-engine
py=bench/engine/asyncio_baseline.py
out=$(mktemp)
trap 'rm -f "$out"' EXIT

scenarios=("1000000 64 0" "100000 64 0" "100000 64 1" "100000 1024 1")
for s in "${scenarios[@]}"; do
  for _ in $(seq "$runs"); do
    for imp in agent33-stream agent33-run-all tokio-joinset tokio-buffered; do
      # run_all keeps every result: not run at a million tasks.
      if [ "$imp" = agent33-run-all ] && [ "${s%% *}" -gt 100000 ]; then continue; fi
      # shellcheck disable=SC2086
      $bin $imp $s >>"$out"
    done
    # shellcheck disable=SC2086
    python3 $py $s >>"$out"
    # The default setup (system allocator), for the no-op scenarios.
    if [ "${s##* }" = 0 ]; then
      for imp in agent33-stream tokio-joinset; do
        # shellcheck disable=SC2086
        $sysbin $imp $s >>"$out"
      done
    fi
  done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r["tasks"], r["limit"], r["sleep_ms"]), {}).setdefault(r["impl"], []).append(r)
print(f"load average: {open('/proc/loadavg').read().split()[0]}\n")
print("| tasks | limit | task | implementation | tasks/s (median) | peak RSS |")
print("|---|---|---|---|---|---|")
med = {}
for key in sorted(by, key=lambda k: (-k[0], k[1], k[2])):
    n, limit, sleep = key
    for imp, rs in sorted(by[key].items()):
        tps = statistics.median(r["tasks_per_sec"] for r in rs)
        rss = statistics.median(r["peak_rss_kb"] for r in rs)
        med[(key, imp)] = (tps, rss)
        task = "no-op" if sleep == 0 else f"sleep {sleep} ms"
        print(f"| {n:,} | {limit} | {task} | {imp} | {tps:,.0f} | {rss/1024:.1f} MiB |")
print()
print("| scenario | agent-33 ÷ asyncio | agent-33 ÷ tokio JoinSet |")
print("|---|---|---|")
for key in sorted(by, key=lambda k: (-k[0], k[1], k[2])):
    a = med.get((key, "agent33-stream"))
    p = med.get((key, "python-asyncio"))
    j = med.get((key, "tokio-joinset"))
    if a and p and j:
        n, limit, sleep = key
        task = "no-op" if sleep == 0 else f"sleep {sleep} ms"
        print(f"| {n:,} × {task} @ {limit} | {a[0]/p[0]:.1f}× | {a[0]/j[0]:.2f}× |")
print()
print("| scenario, system allocator | agent-33 ÷ tokio JoinSet |")
print("|---|---|")
for key in sorted(by, key=lambda k: (-k[0], k[1], k[2])):
    a = med.get((key, "agent33-stream+sysalloc"))
    j = med.get((key, "tokio-joinset+sysalloc"))
    if a and j:
        n, limit, _ = key
        print(f"| {n:,} × no-op @ {limit} | {a[0]/j[0]:.2f}× |")
a1 = med.get(((1000000, 64, 0), "agent33-stream"))
a2 = med.get(((100000, 64, 0), "agent33-stream"))
if a1 and a2:
    print(f"\nstreaming peak RSS, 1,000,000 ÷ 100,000 tasks: {a1[1]/a2[1]:.2f}×")
PY
