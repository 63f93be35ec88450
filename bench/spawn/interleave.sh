#!/usr/bin/env bash
# Runs commands in turn, round after round, and compares each with a
# reference by the ratio of their times in the same round: drift of a
# shared machine between rounds cancels out.
#
# Usage: bench/spawn/interleave.sh ROUNDS INPUT REF NAME=COMMAND...
#   each COMMAND reads INPUT on stdin; REF is one of the NAMEs.
# Example (2,000 `true` jobs at -j 8):
#   seq 2000 > in; bench/spawn/interleave.sh 30 in rp \
#     "a33=target/release/agent-33 run -j 8 --command true --artifacts-from - --output none -q" \
#     "rp=rust-parallel -j 8 true"
set -euo pipefail
rounds=$1 input=$2 ref=$3
shift 3
declare -A ms
for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    name=${spec%%=*} cmd=${spec#*=}
    start=$(date +%s%N)
    bash -c "$cmd" < "$input" > /dev/null 2>&1
    ms[$name]+="$(( ($(date +%s%N) - start) / 1000000 )) "
  done
done
for spec in "$@"; do
  name=${spec%%=*}
  python3 - "$name" "${ms[$name]}" "${ms[$ref]}" <<'PY'
import statistics as st, sys
name, mine, ref = sys.argv[1], [int(x) for x in sys.argv[2].split()], [int(x) for x in sys.argv[3].split()]
ratios = [a / b for a, b in zip(mine, ref)]
print(f"{name:12} median {st.median(mine):6.0f} ms   ÷ ref: median {st.median(ratios):.3f}, "
      f"mean {st.mean(ratios):.3f}, faster in {sum(r < 1 for r in ratios)} of {len(ratios)}")
PY
done
