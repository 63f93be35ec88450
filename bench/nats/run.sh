#!/usr/bin/env bash
# agent-33 across machines (PRODUCT-distributed.md, Performance), side by
# side in one run on this machine:
#
#   1. 2,000 x `true` at limit 8: a local `agent-33 run` against the same
#      run on two workers of 4 slots each through a local nats-server.
#   2. Fail-fast propagation: 4 tasks wait on two workers, a fifth fails;
#      the time from the failure to the last waiting task's SIGTERM, read
#      from one ledger with nanosecond stamps (same machine, same clock).
#   3. The coordinator's peak RSS with MEM_SMALL and MEM_LARGE tasks
#      streamed from --artifacts-from (once each; MEM_LARGE=0 skips it).
#
# Usage: bench/nats/run.sh     RUNS=5  N=2000  MEM_SMALL=10000  MEM_LARGE=100000  AGENT33=path/to/agent-33
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-5}
N=${N:-2000}
if [ -z "${AGENT33:-}" ]; then
  cargo build --release -p agent33-cli --manifest-path "$ROOT/Cargo.toml" >&2
  AGENT33=$ROOT/target/release/agent-33
fi
SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
[ -x "$SERVER" ] || { echo "nats-server is not installed (apt-get install nats-server)" >&2; exit 1; }

WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

"$SERVER" -a 127.0.0.1 -p -1 --ports_file_dir "$WORK" -js -sd "$WORK/store" >/dev/null 2>&1 &
pids+=($!)
server=$!
for _ in $(seq 200); do [ -s "$WORK/nats-server_$server.ports" ] && break; sleep 0.05; done
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$WORK/nats-server_$server.ports")

cat > agent33.yaml <<'YAML'
agents:
  hold:
    shell: true
    command: 'trap ''echo "term $(date +%s%N)" >> ledger; exit 143'' TERM; echo "start $1" >> ledger; while true; do sleep 0.01; done'
  boom:
    shell: true
    command: 'while [ "$(cat ledger 2>/dev/null | grep -c ^start)" -lt 4 ]; do sleep 0.01; done; echo "fail $(date +%s%N)" >> ledger; exit 1'
tasks:
  - { agent: hold, artifact: a }
  - { agent: hold, artifact: b }
  - { agent: hold, artifact: c }
  - { agent: hold, artifact: d }
  - { agent: boom, artifact: e }
YAML

for w in w1 w2; do
  "$AGENT33" worker --nats "$URL" --id "$w" --slots 4 --allow-adhoc 2>"$w.err" &
  pids+=($!)
done
for w in w1 w2; do
  for _ in $(seq 400); do grep -q "^ready:" "$w.err" && break; sleep 0.05; done
done

seq "$N" > artifacts
now() { date +%s%N; }
local_ms=(); remote_ms=(); fail_ms=()
for round in $(seq "$RUNS"); do
  t=$(now); "$AGENT33" run -j 8 --command true --artifacts-from artifacts --output none -q; local_ms+=($(( ($(now) - t) / 1000000 )))
  t=$(now); "$AGENT33" run --nats "$URL" -j 8 --command true --artifacts-from artifacts --output none -q; remote_ms+=($(( ($(now) - t) / 1000000 )))
  rm -f ledger
  "$AGENT33" run --nats "$URL" -j 5 --output none -q >/dev/null 2>&1 || true
  fail=$(awk '/^fail/ {print $2}' ledger)
  last=$(awk '/^term/ {print $2}' ledger | sort -n | tail -1)
  fail_ms+=("$(python3 -c "print(f'{($last - $fail) / 1e6:.1f}')")")
  echo "round $round: local ${local_ms[-1]} ms, two workers ${remote_ms[-1]} ms, fail-fast ${fail_ms[-1]} ms" >&2
done

# Peak RSS of the coordinator alone (the workers are other processes).
peak_rss_kib() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}
MEM_SMALL=${MEM_SMALL:-10000}
MEM_LARGE=${MEM_LARGE:-100000}
mem_small=""; mem_large=""
if [ "$MEM_LARGE" -gt 0 ]; then
  for n in "$MEM_SMALL" "$MEM_LARGE"; do
    seq "$n" > "mem-$n"
    kib=$(peak_rss_kib "$AGENT33" run --nats "$URL" -j 8 --command true --artifacts-from "mem-$n" --output none -q)
    echo "coordinator, $n tasks streamed: peak RSS $kib KiB" >&2
    if [ "$n" = "$MEM_SMALL" ]; then mem_small=$kib; else mem_large=$kib; fi
  done
fi

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lm=$(median "${local_ms[@]}"); rm_=$(median "${remote_ms[@]}"); fm=$(median "${fail_ms[@]}")
echo
echo "| scenario | median of $RUNS |"
echo "|---|---|"
echo "| $N x true, -j 8, local | $lm ms |"
echo "| $N x true, -j 8, two workers (4 slots each) | $rm_ ms ($(python3 -c "print(f'{$rm_ / $lm:.2f}')")x local) |"
echo "| fail-fast: failure to the last worker task's SIGTERM | $fm ms |"
if [ -n "$mem_large" ]; then
  echo "| coordinator peak RSS, $MEM_SMALL / $MEM_LARGE tasks streamed | $((mem_small / 1024)) / $((mem_large / 1024)) MiB ($(python3 -c "print(f'{$mem_large / $mem_small:.2f}')")x) |"
fi
