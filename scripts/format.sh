#!/bin/sh
# clang-format over every C file of the project: --check fails on any difference (CI),
# without arguments rewrites the files in place.
set -eu
cd "$(dirname "$0")/.."
FILES=$(git ls-files '*.c' '*.h' 2>/dev/null || find daemon tools tests bench -name '*.[ch]')
if [ "${1:-}" = "--check" ]; then
    clang-format --dry-run -Werror $FILES
else
    clang-format -i $FILES
fi
