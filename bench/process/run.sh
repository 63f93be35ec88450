#!/usr/bin/env bash
# Process control, side by side: agent-33 against GNU parallel and
# rust-parallel, in one run (see README.md).
#
# (a) Fail-fast latency: 5 tasks at once, 4 that wait for a signal (2 with a
#     grandchild in their group) and 1 that fails once the 4 are set up. The
#     time from the failing task's exit to the runner's exit, and the
#     processes left behind when the runner has exited.
# (b) Timeout precision: one task with a grandchild and a 1 s timeout. The
#     time from its deadline until the task and its grandchild are both
#     dead, and the processes left behind.
#
# A runner that has not exited LIMIT_S seconds after it started is killed
# and counted as "never".
#
# Knobs: RUNS=21  TIMEOUT_S=1  LIMIT_S=10  RUNNERS="agent-33 parallel rust-parallel"
#        AGENT33=path/to/agent-33 (skip the release build)  OUT=folder
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench-process}
RUNS=${RUNS:-21}
TIMEOUT_S=${TIMEOUT_S:-1}
LIMIT_S=${LIMIT_S:-10}
RUNNERS=${RUNNERS:-"agent-33 parallel rust-parallel"}
mkdir -p "$OUT"

# shellcheck source=bench/setup.sh
source "$ROOT/bench/setup.sh"
bench_setup parallel python3 cc pgrep
H=$OUT/helper
cc -O2 -o "$H" "$ROOT/bench/process/helper.c"

printf '%s\n' sleep sleepg sleep sleepg fail >"$OUT/fail-fast.in"
echo sleepg >"$OUT/timeout.in"

echo "== machine: $(nproc) cores, $(uptime)"
echo "== versions: $(parallel --version | head -1), $(rust-parallel --version)"

# Sets CMD to the runner's command line for experiment EXP (fail-fast,
# timeout); the tasks run `helper task DIR MARK ROLE`, ROLE being the input
# line.
runner_cmd() {
    local runner=$1 exp=$2 dir=$3 mark=$4
    local task=("$H" task "$dir" "$mark")
    local input=$OUT/$exp.in
    case $runner/$exp in
        agent-33/fail-fast)
            CMD=("$AGENT33" run -j 5 --command "${task[*]}" --artifacts-from "$input" --output none -q) ;;
        agent-33/timeout)
            CMD=("$AGENT33" run --timeout "$TIMEOUT_S" --command "${task[*]}" --artifacts-from "$input" --output none -q) ;;
        parallel/fail-fast)
            CMD=(parallel -j 5 --halt now,fail=1 "${task[@]}" :::: "$input") ;;
        parallel/timeout)
            CMD=(parallel --timeout "$TIMEOUT_S" "${task[@]}" :::: "$input") ;;
        rust-parallel/fail-fast)
            CMD=(rust-parallel -j 5 --exit-on-error -i "$input" "${task[@]}") ;;
        rust-parallel/timeout)
            CMD=(rust-parallel --timeout-seconds "$TIMEOUT_S" -i "$input" "${task[@]}") ;;
    esac
}

# Counts the live processes carrying MARK, then kills them (by pid).
survivors() {
    local mark=$1 pids
    pids=$(pgrep -f -- "$mark" || true)
    echo "$pids" | grep -c . || true
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
}

results=$OUT/results.txt
: >"$results"
for exp in fail-fast timeout; do
    for runner in $RUNNERS; do
        runner_cmd "$runner" "$exp" DIR MARK
        echo "== $exp / $runner: ${CMD[*]}"
        for i in $(seq "$RUNS"); do
            dir=$(mktemp -d "$OUT/run.XXXXXX")
            mark="agent33-bench-$$-$runner-$exp-$i"
            runner_cmd "$runner" "$exp" "$dir" "$mark"
            if [ "$exp" = timeout ]; then
                "$H" dead "$dir" $(( (TIMEOUT_S + 3) * 1000 )) >"$dir/dead" &
                watcher=$!
            fi
            rc=0
            # --foreground: on expiry, kill the runner alone, not its group,
            # so what it leaves behind still shows.
            "$H" run "$dir/exit_at" timeout --foreground -s KILL "$LIMIT_S" "${CMD[@]}" \
                >/dev/null 2>&1 || rc=$?
            if [ "$exp" = fail-fast ]; then
                left=$(survivors "$mark")
                failed=$(cat "$dir/failed_at" 2>/dev/null || echo -1)
                exited=$(cat "$dir/exit_at")
                # Killed by `timeout`: it never exited by itself.
                [ "$rc" = 137 ] && exited=-1
                echo "$exp $runner $i $failed $exited $left" >>"$results"
            else
                # The watcher gives up on processes the runner left alive.
                wait "$watcher" || true
                left=$(survivors "$mark")
                echo "$exp $runner $i $(cat "$dir/dead") $left" >>"$results"
            fi
            rm -rf "$dir"
        done
    done
done
echo "== after: $(uptime)"

python3 - "$results" "$TIMEOUT_S" <<'EOF'
import statistics, sys
path, timeout_s = sys.argv[1], float(sys.argv[2])
fail, tout, left = {}, {}, {}
order = []
for line in open(path):
    f = line.split()
    exp, runner = f[0], f[1]
    if runner not in order:
        order.append(runner)
    left.setdefault((exp, runner), 0)
    left[(exp, runner)] += int(f[-1])
    if exp == "fail-fast":
        failed, exited = int(f[3]), int(f[4])
        if failed > 0:
            fail.setdefault(runner, []).append(
                (exited - failed) / 1e6 if exited > 0 else float("inf"))
    else:
        start, dead = int(f[3]), int(f[4])
        if dead > 0:
            tout.setdefault(runner, []).append((dead - start) / 1e6 - timeout_s * 1e3)
        else:
            tout.setdefault(runner, []).append(float("inf"))

def med(xs):
    return statistics.median(xs) if xs else float("nan")

def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.9))] if xs else float("nan")

def fmt(x):
    return "never" if x == float("inf") else f"{x:.1f}"

base_f = med(fail.get("agent-33", []))
base_t = med(tout.get("agent-33", []))
print()
print("| runner | fail-fast: exit after failure, median ms | p90 | runs | survivors | × agent-33 "
      "| timeout: both dead after deadline, median ms | p90 | runs | survivors | × agent-33 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in order:
    fm, tm = med(fail.get(r, [])), med(tout.get(r, []))
    rf = f"{fm / base_f:.1f}×" if base_f and fm == fm else "-"
    rt = f"{tm / base_t:.1f}×" if base_t and tm not in (float("inf"),) and tm == tm else "-"
    print(f"| {r} | {fmt(fm)} | {fmt(p90(fail.get(r, [])))} | {len(fail.get(r, []))} "
          f"| {left.get(('fail-fast', r), 0)} | {rf} "
          f"| {fmt(tm)} | {fmt(p90(tout.get(r, [])))} | {len(tout.get(r, []))} "
          f"| {left.get(('timeout', r), 0)} | {rt} |")
print()
print("never: the runner had not exited (fail-fast) or the processes were not dead (timeout) "
      "when the harness gave up")
print("survivors: processes of the run still alive once the runner exited (summed over runs; killed afterwards)")
print("timeout: measured from the task's own start stamp + the timeout, so the figure is low by the exec time (~1 ms)")
EOF
