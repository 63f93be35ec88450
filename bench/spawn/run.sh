#!/usr/bin/env bash
# Per-task overhead of agent-33 against xargs -P, GNU parallel, rust-parallel
# and a bare posix_spawn/waitpid loop (the physical floor), in one run.
#
# For each command (`true`, `sh -c 'exit 0'`), N (2,000 and 10,000) and -j
# (2 and 8), hyperfine times every runner reading N input lines from stdin,
# the runners taking turns round by round;
# each job gets its line appended as the last argument. The table shows the
# median wall time, the CPU time (user + sys of the runner and the jobs) per
# job, the runner's peak RSS, and ratios against xargs. A check then runs
# 100,000 jobs through agent-33 and compares its peak RSS with 2,000 jobs,
# without and with a JSON report (`--report`); last, owncpu.py tells each
# runner's own CPU per job from its jobs'.
#
# agent-33 runs with every guarantee on: process groups, pipes captured
# (`--output none` only stops printing), timeouts armed (the default 300 s),
# the subreaper and its sweeps, the guard, and the JSON report written.
#
# Usage: bench/spawn/run.sh            (see README.md for the knobs)
#   NS="2000 10000"  JS="2 8"  RUNS=10  SLOW_RUNS=3  BIG=100000
#   RUNNERS="agent-33 xargs parallel rust-parallel floor"
#   AGENT33=path/to/agent-33   (skip the release build)
#   OWN_RUNS=3   (rounds of the own-CPU check of `true` jobs; 0 skips it)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench-spawn}
NS=${NS:-"2000 10000"}
JS=${JS:-"2 8"}
RUNS=${RUNS:-10}
SLOW_RUNS=${SLOW_RUNS:-3}
BIG=${BIG:-100000}
RUNNERS=${RUNNERS:-"agent-33 xargs parallel rust-parallel floor"}
mkdir -p "$OUT"
# Only this run's measurements go into its tables.
rm -f "$OUT"/*.json "$OUT"/*.rss

# shellcheck source=bench/setup.sh
source "$ROOT/bench/setup.sh"
bench_setup hyperfine parallel python3 cc time
cc -O2 -o "$OUT/floor" "$ROOT/bench/spawn/floor.c"
FLOOR=$OUT/floor

echo "== machine: $(nproc) cores, $(uptime)"
echo "== versions: $("$AGENT33" --version 2>/dev/null || echo agent-33), $(parallel --version | head -1)," \
    "$(rust-parallel --version), $(xargs --version | head -1), $(hyperfine --version)"

# The command line of RUNNER for N jobs, J at once, of command CMD (`true`
# or `sh`), reading stdin.
runner_cmd() {
    local runner=$1 n=$2 j=$3 cmd=$4
    local words
    case $cmd in
        true) words="true" ;;
        sh) words="sh -c 'exit 0'" ;;
    esac
    case $runner in
        agent-33) echo "$AGENT33 run -j $j --command \"$words\" --artifacts-from - --output none -q --report $OUT/agent-33-report" ;;
        xargs) echo "xargs -P $j -n 1 $words" ;;
        parallel) echo "parallel -j $j $words" ;;
        rust-parallel) echo "rust-parallel -j $j $words" ;;
        floor) echo "$FLOOR $n $j $words" ;;
    esac
}

# Runners take turns, one run each per round, so that a change in the
# machine's speed during the benchmark (other tenants, thermal limits) falls
# on every runner alike instead of on whichever ran at that moment. Every
# other round runs them in reverse order: with a fixed order, whatever a
# place in the round costs or saves (the kernel's deferred clean-up of the
# run before, warm caches) would fall on the same runner every time.
reversed_runners=$(printf '%s\n' $RUNNERS | tac | tr '\n' ' ')
for cmd in true sh; do
    for n in $NS; do
        seq "$n" >"$OUT/in.$n"
        for j in $JS; do
            for runner in $RUNNERS; do
                line=$(runner_cmd "$runner" "$n" "$j" "$cmd")
                echo "== $cmd/$n/$j/$runner: $line < in.$n"
                # Warm-up run, which also records the runner's peak RSS.
                /usr/bin/time -f %M -o "$OUT/$cmd-$n-$j-$runner.rss" \
                    sh -c "$line < $OUT/in.$n >/dev/null 2>&1"
            done
            for round in $(seq "$RUNS"); do
                order=$RUNNERS
                [ $((round % 2)) -eq 0 ] && order=$reversed_runners
                for runner in $order; do
                    [ "$runner" = parallel ] && [ "$round" -gt "$SLOW_RUNS" ] && continue
                    line=$(runner_cmd "$runner" "$n" "$j" "$cmd")
                    hyperfine --style none --runs 1 -n "$cmd/$n/$j/$runner" \
                        --export-json "$OUT/$cmd-$n-$j-$runner.$round.json" \
                        "$line < $OUT/in.$n" >/dev/null
                done
                echo "   round $round of $RUNS done"
            done
        done
    done
done

echo "== agent-33 peak RSS, 2000 vs $BIG jobs from stdin (-j 8), without and with --report"
for n in 2000 "$BIG"; do
    seq "$n" | /usr/bin/time -f %M -o "$OUT/big-$n.rss" \
        "$AGENT33" run -j 8 --command true --artifacts-from - --output none -q
    seq "$n" | /usr/bin/time -f %M -o "$OUT/big-$n-report.rss" \
        "$AGENT33" run -j 8 --command true --artifacts-from - --output none -q \
        --report "$OUT/big-$n.report.json"
done
echo "== after: $(uptime)"

python3 - "$OUT" "$BIG" <<'EOF'
import json, os, sys
out, big = sys.argv[1], sys.argv[2]
import statistics
runs = {}
for name in sorted(os.listdir(out)):
    if not name.endswith(".json") or name.startswith("big-"):
        continue
    stem, round_, _ = name.rsplit(".", 2)
    cmd, n, j, runner = stem.split("-", 3)
    r = json.load(open(os.path.join(out, name)))["results"][0]
    runs.setdefault((cmd, int(n), int(j), runner), []).append(
        (int(round_), r["times"][0], r["user"] + r["system"]))
rows = {}
for key, rs in runs.items():
    walls = [w for _, w, _ in rs]
    rss_path = os.path.join(out, "-".join(map(str, key)) + ".rss")
    rss = int(open(rss_path).read().split()[-1]) / 1024 if os.path.exists(rss_path) else float("nan")
    rows[key] = dict(
        median=statistics.median(walls),
        stddev=statistics.stdev(walls) if len(walls) > 1 else 0.0,
        cpu_us=statistics.median(c for _, _, c in rs) / key[1] * 1e6, rss=rss)
order = ["agent-33", "xargs", "parallel", "rust-parallel", "floor"]
print()
print("| command | N | -j | runner | median wall (s) | ± | CPU/job (µs) | peak RSS (MiB) | wall / xargs | CPU / xargs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in sorted({k[:3] for k in rows}, key=lambda k: (k[0] != "true", k[1], k[2])):
    base = rows.get(key + ("xargs",))
    for runner in order:
        r = rows.get(key + (runner,))
        if not r:
            continue
        ratio = lambda a, b: f"{a / b:.2f}×" if b else "-"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {runner} | {r['median']:.3f} | {r['stddev']:.3f} "
              f"| {r['cpu_us']:.0f} | {r['rss']:.1f} "
              f"| {ratio(r['median'], base['median']) if base else '-'} "
              f"| {ratio(r['cpu_us'], base['cpu_us']) if base else '-'} |")
# agent-33 against rust-parallel round by round: the two ran back to back
# in each round, so the machine's drift between rounds cancels out.
paired = []
for key in sorted({k[:3] for k in runs}, key=lambda k: (k[0] != "true", k[1], k[2])):
    ours = {r: w for r, w, _ in runs.get(key + ("agent-33",), [])}
    theirs = {r: w for r, w, _ in runs.get(key + ("rust-parallel",), [])}
    both = sorted(set(ours) & set(theirs))
    if both:
        ratios = [ours[r] / theirs[r] for r in both]
        won = sum(x < 1 for x in ratios)
        paired.append(f"| {key[0]} | {key[1]} | {key[2]} | {statistics.median(ratios):.3f}× "
                      f"| {won} of {len(both)} |")
if paired:
    print()
    print("| command | N | -j | agent-33 ÷ rust-parallel, median of rounds | rounds agent-33 was faster |")
    print("|---|---|---|---|---|")
    print("\n".join(paired))
print()
for suffix, what in (("", ""), ("-report", ", with --report")):
    small = int(open(os.path.join(out, f"big-2000{suffix}.rss")).read().split()[-1])
    large = int(open(os.path.join(out, f"big-{big}{suffix}.rss")).read().split()[-1])
    print(f"agent-33 peak RSS{what}: 2000 jobs {small / 1024:.1f} MiB, {big} jobs "
          f"{large / 1024:.1f} MiB (+{(large / small - 1) * 100:.0f}%)")
EOF

# What each runner adds of its own, apart from its jobs' CPU (owncpu.py).
# GNU parallel only at 2,000 jobs: it takes minutes for more.
OWN_RUNS=${OWN_RUNS:-3}
if [ "$OWN_RUNS" -gt 0 ]; then
    for n in $NS; do
        for j in $JS; do
            specs=()
            for runner in $RUNNERS; do
                [ "$runner" = parallel ] && [ "$n" -gt 2000 ] && continue
                specs+=("$runner=$(runner_cmd "$runner" "$n" "$j" true)")
            done
            echo
            echo "Own CPU per job, true, $n jobs, -j $j (median of $OWN_RUNS rounds):"
            echo
            python3 "$ROOT/bench/spawn/owncpu.py" "$OWN_RUNS" "$OUT/in.$n" "$n" \
                xargs,rust-parallel "${specs[@]}"
        done
    done
fi
