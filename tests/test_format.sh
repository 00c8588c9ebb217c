#!/usr/bin/env bash
# test_format.sh — the tracked C sources are formatted with the repository's .clang-format
# (issue 39: a formatter configured and applied). Runs scripts/format.sh --check, which names
# each file that differs and how many of its lines would change; fix with scripts/format.sh.
# clang-format 14 is what the style was measured with (Debian 12's clang-format, installed by
# scripts/setup.sh); another major version formats some constructs differently, so without
# version 14 this says so and counts nothing.
# usage: bash test_format.sh [PATH/TO/lfm2c]   (the argument is ignored: ctest passes it)
set -u
root="$(cd "$(dirname "$0")/.." && pwd)"
cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  for c in clang-format-14 clang-format; do command -v $c >/dev/null && { cf=$c; break; }; done
fi
if [ -z "$cf" ] || ! "$cf" --version | grep -q 'version 14\.'; then
  echo "SKIP clang-format 14 not found (scripts/setup.sh installs it)"; echo "0 passed, 0 failed"; exit 0
fi
if CLANG_FORMAT=$cf bash "$root/scripts/format.sh" --check; then
  echo "0 failed: every tracked C file is formatted"; echo "1 passed, 0 failed"
else
  echo "FAIL the files above are not formatted: run bash scripts/format.sh"; echo "0 passed, 1 failed"; exit 1
fi
