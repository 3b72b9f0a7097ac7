#!/usr/bin/env bash
# ab.sh - two commits measured in turn by the same benchmark, ROUNDS times each (A B A B ...):
# on a machine whose speed drifts by 10-20% over minutes, only alternated runs compare.
# Prints one summary line per run (the benchmark's table row for the first of LOADS/MODES),
# prefixed with the commit; each run's full report is kept in $OUT.
#
#   sudo bench/ab.sh 4ad86f5 HEAD                              # inbound.sh, same sender, reuse
#   sudo ROUNDS=2 LOADS=spread MODES=newconn bench/ab.sh A B
#   sudo BENCH=accept.sh bench/ab.sh A B
#
# Environment: ROUNDS=3, BENCH=inbound.sh, REPS=1, SERVERS=postern, LOADS=same, MODES=reuse,
# OUT=/tmp/ab-<time>; everything else is passed on to the benchmark.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { echo "usage: bench/ab.sh COMMIT_A COMMIT_B" >&2; exit 2; }
A=$(git -C "$HERE/.." rev-parse --short "$1")
B=$(git -C "$HERE/.." rev-parse --short "$2")
[ "$A" != "$B" ] || { echo "error: $1 and $2 are the same commit ($A)" >&2; exit 2; }
: "${ROUNDS:=3}" "${BENCH:=inbound.sh}" "${OUT:=/tmp/ab-$(date +%s)}"
export REPS="${REPS:-1}" SERVERS="${SERVERS:-postern}" LOADS="${LOADS:-same}" MODES="${MODES:-reuse}"
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
	for rev in "$A" "$B"; do
		if REV=$rev "$HERE/$BENCH" >"$OUT/$rev-$round.md" 2>"$OUT/$rev-$round.err"; then
			echo "$rev $(grep -m1 -E "^\| (${LOADS%% *} \| )?${MODES%% *} \|" "$OUT/$rev-$round.md")"
		else
			echo "$rev round $round FAILED: see $OUT/$rev-$round.err"
		fi
	done
done
