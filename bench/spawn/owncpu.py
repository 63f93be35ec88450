#!/usr/bin/env python3
"""A runner's own CPU per job, apart from its jobs' CPU.

Wall time at -j 8 on two cores measures the jobs (they keep both CPUs
busy), and the CPU of runner plus jobs is mostly the jobs' own start-up.
This isolates what a runner adds: each command runs as a direct child
(`exec` in `sh -c`), and once it has exited, but before it is reaped, its
`/proc/PID/stat` still holds its own user + system time (every thread's)
apart from the time of the children it reaped. Runners take turns, one
run each per round.

Usage: owncpu.py ROUNDS INPUT N REFS NAME=COMMAND...
  each COMMAND reads INPUT (N lines) on stdin; REFS is a comma-separated
  list of NAMEs to give ratios against (median of the per-round ratios).
  The kernel counts in clock ticks (10 ms): with ~100 µs per job, use
  thousands of jobs.
"""
import os
import statistics
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


def run(cmd, input_path):
    """Runs cmd; returns (own, children) CPU seconds."""
    with open(input_path, "rb") as stdin:
        proc = subprocess.Popen(["sh", "-c", "exec " + cmd], stdin=stdin,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A zombie keeps its accounting until reaped: read it in between.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{proc.pid}/stat") as f:
        # Fields after the parenthesised name: 14-17 are utime, stime,
        # cutime, cstime (1-based, counting pid and name).
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) / TICK for x in fields[11:15])
    if proc.wait() != 0:
        sys.exit(f"{cmd!r} failed")
    return utime + stime, cutime + cstime


def main():
    rounds, input_path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    specs = [s.split("=", 1) for s in sys.argv[5:]]
    refs = [r for r in sys.argv[4].split(",") if r in dict(specs)]
    own = {name: [] for name, _ in specs}
    jobs = {name: [] for name, _ in specs}
    for _ in range(rounds):
        for name, cmd in specs:
            o, c = run(cmd, input_path)
            own[name].append(o)
            jobs[name].append(c)
    print("| runner | own CPU/job (µs) | " + "".join(f"own ÷ {r} | " for r in refs)
          + "jobs' CPU/job (µs) |")
    print("|---|---|" + "---|" * len(refs) + "---|")
    for name, _ in specs:
        cells = [f"{statistics.median(own[name]) / n * 1e6:.1f}"]
        for ref in refs:
            ratios = [a / b if b else float("nan") for a, b in zip(own[name], own[ref])]
            cells.append(f"{statistics.median(ratios):.3f}×")
        cells.append(f"{statistics.median(jobs[name]) / n * 1e6:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
