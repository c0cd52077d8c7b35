#!/usr/bin/env bash
# Run benchmarks one after another, each under a time limit, one log per benchmark.
#   bash benchmarks/run_all.sh                      # every benchmark, default device and sizes
#   bash benchmarks/run_all.sh gan ddpm -- --quick  # some of them, with extra flags
# Logs go to $BENCH_OUT (default bench-results/); BENCH_LIMIT caps each one (seconds).
set -u
cd "$(dirname "$0")/.."
out="${BENCH_OUT:-bench-results}"
limit="${BENCH_LIMIT:-600}"
mkdir -p "$out"
names=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do names+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#names[@]} -eq 0 ]; then
  for f in benchmarks/bench_*.py; do n=${f#benchmarks/bench_}; names+=("${n%.py}"); done
fi
for name in "${names[@]}"; do
  echo "=== bench_$name $*"
  start=$(date +%s)
  timeout "$limit" python "benchmarks/bench_$name.py" "$@" >"$out/$name.log" 2>&1
  code=$?
  tail -n 40 "$out/$name.log"
  echo "=== bench_$name: exit $code after $(( $(date +%s) - start )) s"
done
