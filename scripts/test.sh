#!/bin/sh
# The whole test suite, from a fresh Debian machine (as root): installs what is missing, checks
# formatting, builds with warnings as errors, runs every test (unit, integration, slow), then
# the whole suite again built with AddressSanitizer + UndefinedBehaviorSanitizer, then the wire
# decoder's libFuzzer target for a bounded time.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --fast     format, every build, unit tests only (a minute)
#
# Environment: FUZZ_SECONDS (default 60), JOBS (default: number of CPUs).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FAST=0
[ "${1:-}" = "--fast" ] && FAST=1

step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
scripts/deps.sh

step "clang-format check"
scripts/format.sh --check

# Every build first, so a compile or link error in any of them fails in seconds, not after
# the long test stages.
step "build (warnings are errors)"
cmake -S . -B build -DMETERD_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"

step "libFuzzer target build (clang)"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DMETERD_FUZZ=ON -DMETERD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz_wire

if [ "$FAST" = 1 ]; then
    step "unit tests"
    (cd build && ctest -L unit --output-on-failure)
    exit 0
fi

step "AddressSanitizer + UndefinedBehaviorSanitizer build"
cmake -S . -B build-asan -DMETERD_WERROR=ON -DMETERD_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$JOBS"

step "all tests: unit, integration, slow"
(cd build && ctest --output-on-failure --timeout 900)

step "all tests again under the sanitizers"
# The integration tests check the daemon's exit status after SIGTERM, so a leak or any other
# sanitizer report fails them.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 900)

step "libFuzzer: wire decoder for ${FUZZ_SECONDS}s"
rm -rf build-fuzz/corpus && mkdir -p build-fuzz/corpus build-fuzz/artifacts
/usr/bin/python3 tests/fuzz/make_corpus.py build-fuzz/corpus --dict build-fuzz/wire.dict
build-fuzz/fuzz_wire -max_total_time="$FUZZ_SECONDS" -max_len=4096 -print_final_stats=1 \
    -dict=build-fuzz/wire.dict -artifact_prefix=build-fuzz/artifacts/ build-fuzz/corpus

step "all tests passed"
