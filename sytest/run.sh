#!/usr/bin/env bash
# Run the Matrix community's SyTest suite against Lattice.
#
#   SYTEST_DIR=/path/to/sytest sytest/run.sh [tests/FILE.pl ...]
#
# SyTest is not part of Lattice: clone https://github.com/matrix-org/sytest
# somewhere outside this project and install its Perl dependencies (Debian
# packages; see sytest/README.md). CI has no copy, so it does not run this.
#
# The script builds lattice, runs SyTest with the Lattice plugin
# (sytest/plugin) and prints, as its last line,
#   sytest: N passed, N failed, N skipped
# With test files as arguments only those files run (plus the fixtures they
# need). It then compares the passing tests with sytest/passing.txt: a test
# listed there that ran and did not pass is a regression.
#
# Optional environment:
#   SYTEST_OUT_DIR     results: results.tap, run.log, summary.txt, passing.txt,
#                      the binary and the servers' folders (work/server-N, with
#                      each server's lattice.log); default /tmp/lattice-sytest
#   SYTEST_TIMEOUT     wall-clock limit of the run in seconds (default 5400)
#   SYTEST_PORT_RANGE  ports for the homeservers (default 8800:8899)
#   SYTEST_UPDATE=1    write the passing tests of a whole-suite run to
#                      sytest/passing.txt
#   SYTEST_STRICT=1    exit 1 when a test of sytest/passing.txt regressed
#   SYTEST_INCLUDE_DEPRECATED=1  also run tests of deprecated endpoints
#   TIMEOUT_FACTOR     read by SyTest: multiplies every test timeout
#
# Exit status: 0 when the run reached its end (the TAP plan line), 1 with
# SYTEST_STRICT=1 and a regression, 2 when SyTest could not run at all.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

if [ -z "${SYTEST_DIR:-}" ]; then
  cat >&2 <<'MSG'
sytest: not run: SYTEST_DIR is unset.
SyTest is not part of Lattice and is not installed here. To run it, clone
https://github.com/matrix-org/sytest outside this project, install its Perl
dependencies (see sytest/README.md) and run
  SYTEST_DIR=/path/to/sytest sytest/run.sh
MSG
  exit 2
fi
SYTEST_DIR="$(cd "$SYTEST_DIR" && pwd)"
[ -x "$SYTEST_DIR/run-tests.pl" ] || { echo "sytest: not run: no run-tests.pl in $SYTEST_DIR" >&2; exit 2; }

OUT="${SYTEST_OUT_DIR:-${TMPDIR:-/tmp}/lattice-sytest}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
TAP="$OUT/results.tap"
LOG="$OUT/run.log"
SUMMARY="$OUT/summary.txt"
PASSING="$OUT/passing.txt"
TIMEOUT="${SYTEST_TIMEOUT:-5400}"

echo "sytest: building lattice" >&2
( cd "$ROOT" && go build -o "$OUT/lattice" ./cmd/lattice )

rm -rf "$WORK"
mkdir -p "$WORK"

# perl-shim stands in for the two CPAN modules Debian lacks.
export PERL5LIB="$HERE/perl-shim${PERL5LIB:+:$PERL5LIB}"
# run-tests.pl loads factories from $SYTEST_PLUGINS/*/lib: here sytest/plugin/lib.
export SYTEST_PLUGINS="$HERE"
export HS_BIN="$OUT/lattice"
export COVER=0

args=( -I Lattice -O tap --all --work-directory "$WORK"
       --port-range "${SYTEST_PORT_RANGE:-8800:8899}" --hs-binary "$HS_BIN" )
[ "${SYTEST_INCLUDE_DEPRECATED:-0}" = 1 ] || args+=( --exclude-deprecated )

echo "sytest: running SyTest from $SYTEST_DIR; results in $OUT" >&2
start=$(date +%s)
rc=0
timed_out=0
# run-tests.pl reads lib/, tests/ and keys/ relative to its cwd. It runs in its
# own process group so that a timeout or Ctrl-C also reaches the servers it
# started.
( cd "$SYTEST_DIR" && exec setsid ./run-tests.pl "${args[@]}" "$@" ) > "$TAP" 2> "$LOG" < /dev/null &
run_pid=$!

stop_group() {
  kill -INT -- "-$run_pid" 2>/dev/null || return 0
  for _ in $(seq 1 30); do
    kill -0 "$run_pid" 2>/dev/null || return 0
    sleep 1
  done
  kill -KILL -- "-$run_pid" 2>/dev/null || true
}
trap 'stop_group; exit 130' INT TERM

while kill -0 "$run_pid" 2>/dev/null; do
  if [ $(( $(date +%s) - start )) -ge "$TIMEOUT" ]; then
    timed_out=1
    stop_group
    break
  fi
  sleep 2
done
wait "$run_pid" || rc=$?
trap - INT TERM
kill -KILL -- "-$run_pid" 2>/dev/null || true
elapsed=$(( $(date +%s) - start ))

perl "$HERE/summarise-tap.pl" --stderr "$LOG" "$TAP" > "$SUMMARY"
echo "run-tests.pl exit code $rc after ${elapsed}s" >> "$SUMMARY"

# Names of the passing tests ("ok N NAME", not skipped), as in passing.txt.
perl -ne 'next unless /^ok \d+ (?:\(expected fail\) )?(.*?)(?: \(\d+ subtests\))?(?: # TODO .*)?$/;
          my $n = $1; next if / # skip /; print "$n\n"' "$TAP" | LC_ALL=C sort -u > "$PASSING"
# Names of every test that ran (passed, failed or skipped).
perl -ne 'next unless /^(?:not )?ok \d+ (?:\(expected fail\) )?(.*?)(?: \(\d+ subtests\))?(?: # (?:TODO|skip) .*)?$/;
          print "$1\n"' "$TAP" | LC_ALL=C sort -u > "$OUT/ran.txt"

complete=0
grep -q '^1\.\.[0-9]' "$TAP" && complete=1
regressed=$(LC_ALL=C comm -12 "$OUT/ran.txt" <(LC_ALL=C sort -u "$HERE/passing.txt") | LC_ALL=C comm -23 - "$PASSING")
newly=$(LC_ALL=C comm -23 "$PASSING" <(LC_ALL=C sort -u "$HERE/passing.txt"))
if [ -n "$regressed" ]; then
  echo "sytest: $(printf '%s\n' "$regressed" | wc -l) test(s) of sytest/passing.txt no longer pass:" >&2
  printf '  %s\n' "$regressed" >&2
fi
if [ -n "$newly" ]; then
  echo "sytest: $(printf '%s\n' "$newly" | wc -l) test(s) pass that sytest/passing.txt does not list (see $PASSING)" >&2
fi
if [ "${SYTEST_UPDATE:-0}" = 1 ]; then
  if [ "$#" -eq 0 ] && [ "$complete" = 1 ]; then
    cp "$PASSING" "$HERE/passing.txt"
    echo "sytest: wrote sytest/passing.txt" >&2
  else
    echo "sytest: SYTEST_UPDATE needs a whole-suite run that reached its end; passing.txt unchanged" >&2
  fi
fi

grep -E '^(plan|WARNING|run-tests)' "$SUMMARY" >&2 || true
if [ "$timed_out" = 1 ]; then
  echo "sytest: stopped after SYTEST_TIMEOUT (${TIMEOUT}s)" >&2
elif [ "$rc" -gt 1 ]; then
  echo "sytest: run-tests.pl aborted (exit $rc); see $LOG" >&2
fi
grep '^sytest: ' "$SUMMARY" | tail -n 1

[ "$complete" = 1 ] || exit 2
if [ "${SYTEST_STRICT:-0}" = 1 ] && [ -n "$regressed" ]; then
  exit 1
fi
exit 0
