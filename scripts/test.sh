#!/usr/bin/env bash
# The README's test command: installs what the project needs, then builds and runs every test.
#   1. release build: unit tests + end-to-end tests with real guests (UML, QEMU)
#   2. ASan + UBSan build: the unit tests again
#   3. formatting check, and every libFuzzer target for a few seconds
# Usage: scripts/test.sh [--unit-only]
set -euo pipefail
cd "$(dirname "$0")/.."

unit_only=0
[[ "${1:-}" == "--unit-only" ]] && unit_only=1

bash scripts/deps.sh

jobs=$(nproc)
echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"

echo "== sanitizer build (ASan + UBSan)"
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize -j "$jobs"

echo "== format check"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "== fuzz targets, briefly (scripts/fuzz.sh runs them longer)"
bash scripts/fuzz.sh 15

echo "== unit tests under ASan + UBSan"
ctest --preset sanitize -LE e2e

if [[ $unit_only == 1 ]]; then
    echo "== release unit tests"
    ctest --preset release -LE e2e
else
    echo "== release tests: unit + end-to-end with real guests"
    ctest --preset release
fi
