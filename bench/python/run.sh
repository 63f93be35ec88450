#!/usr/bin/env bash
# The Python package against its references, side by side in one run (see
# bench/README.md):
#   bash bench/python/run.sh [RUNS]
# - 100,000 no-op async agents at limit 64: agent33_parallel vs the
#   pure-asyncio reference (bench/engine/asyncio_baseline.py), same
#   interpreter, alternating; and the same tasks from a generator, streamed
#   into the run (their objects made inside the clock);
# - 2,000 x CommandAgent(["true"]) at limit 8 vs `agent-33 run`.
# Both builds are release builds (pip builds the wheel in release).
# Prints a Markdown table of medians and the ratios the targets are in.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
venv=${AGENT33_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py=$venv/bin/python
"$py" -m pip install --quiet maturin
"$py" -m pip install --quiet --force-reinstall --no-deps ./crates/agent33-python
cargo build --release -q -p agent33-cli
cli=${CARGO_TARGET_DIR:-target}/release/agent-33
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for _ in $(seq "$runs"); do
  "$py" bench/python/noop.py 100000 64 >>"$out"
  "$py" bench/python/noop.py 100000 64 generator >>"$out"
  "$py" bench/engine/asyncio_baseline.py 100000 64 0 >>"$out"
  "$py" bench/python/commands.py 2000 8 "$cli" >>"$out"
done

"$py" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def med(impl, key):
    return statistics.median(r[key] for r in rows if r["impl"] == impl)
print("| scenario | impl | tasks/s | wall (s) | peak RSS |")
print("|---|---|---:|---:|---:|")
for impl in ("agent33-python", "agent33-python-generator", "python-asyncio"):
    print(f"| 100,000 no-op, limit 64 | {impl} | {med(impl, 'tasks_per_sec'):,.0f} | "
          f"{med(impl, 'seconds'):.2f} | {med(impl, 'peak_rss_kb') / 1024:.1f} MiB |")
for impl in ("agent33-python-command", "agent33-cli"):
    print(f"| 2,000 x true, limit 8 | {impl} | {med(impl, 'tasks_per_sec'):,.0f} | "
          f"{med(impl, 'seconds'):.2f} | |")
n = len([r for r in rows if r["impl"] == "agent33-python"])
print()
print(f"runs: {n}; medians")
print(f"no-op tasks/s, package / asyncio: {med('agent33-python', 'tasks_per_sec') / med('python-asyncio', 'tasks_per_sec'):.2f}x (target >= 2)")
print(f"no-op peak RSS, package / asyncio: {med('agent33-python', 'peak_rss_kb') / med('python-asyncio', 'peak_rss_kb'):.2f}x (target <= 1)")
print(f"CommandAgent wall, package / CLI: {med('agent33-python-command', 'seconds') / med('agent33-cli', 'seconds'):.2f}x (target <= 1.10)")
PY
