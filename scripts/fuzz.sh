#!/usr/bin/env bash
# Builds every libFuzzer target (cmake --preset fuzz: clang, ASan + UBSan) and runs each for
# SECONDS_PER_TARGET seconds (default 60) on a copy of its seed corpus. Exits non-zero on any
# crash; the reproducer is left in build/fuzz/crashes/<target>/.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)" --target $(sed -n 's/^vireo_fuzzer(\([a-z_0-9]*\).*/\1/p' fuzz/CMakeLists.txt)

status=0
for target in build/fuzz/bin/fuzz_*; do
    name=$(basename "$target")
    work=build/fuzz/corpus/$name
    crashes=build/fuzz/crashes/$name
    mkdir -p "$work" "$crashes"
    [[ -d fuzz/corpus/$name ]] && cp -n fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
    # Regression inputs (earlier crashes) must still pass.
    if [[ -d fuzz/regressions/$name ]] && ! "$target" fuzz/regressions/"$name"/* >/dev/null 2>&1; then
        echo "FAIL $name: a regression input crashes again"; status=1; continue
    fi
    log=build/fuzz/$name.log
    if "$target" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$crashes/" \
        "$work" >"$log" 2>&1; then
        execs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" || echo '?')
        cov=$(grep -oP 'cov: \K\d+' "$log" | tail -1 || echo '?')
        echo "ok   $name: $execs executions, coverage $cov edges, corpus $(ls "$work" | wc -l)"
    else
        echo "FAIL $name: crash, see $log and $crashes"; tail -30 "$log"; status=1
    fi
done
exit $status
