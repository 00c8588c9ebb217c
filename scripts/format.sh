#!/usr/bin/env bash
# format.sh — formats the C sources with the repository's .clang-format (the house style).
#   bash scripts/format.sh            rewrite the files in place
#   bash scripts/format.sh --check    change nothing: list the files that differ and how many of
#                                     their lines would change; exit 1 if any would
#   bash scripts/format.sh [--check] FILE...   only those files
# The files: the tracked *.c and *.h under src/, include/, tools/, tests/, examples/ and bench/,
# except the generated src/text/unicode_tables.h (scripts/gen_unicode_tables.py writes it).
# Needs clang-format (Debian: apt-get install clang-format); CLANG_FORMAT names another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null || { echo "format: $cf not found (apt-get install clang-format)" >&2; exit 2; }
if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files 'src/*.c' 'src/*.h' 'include/*.h' 'tools/*.c' 'tools/*.h' 'tests/*.c' \
    'tests/*.h' 'examples/*.c' 'bench/*.c' | grep -vxF src/text/unicode_tables.h)
fi
if [ "$check" = 0 ]; then
  "$cf" -i --style=file "${files[@]}"
  exit 0
fi
# one clang-format for every file first (fast: no process per file); only when it finds a
# difference, each file on its own for the counts
if "$cf" --style=file --dry-run --Werror "${files[@]}" >/dev/null 2>&1; then
  echo "format: 0 of ${#files[@]} files would change (0 lines)"
  exit 0
fi
differ=0 lines=0
for f in "${files[@]}"; do
  n=$("$cf" --style=file "$f" | diff -U0 "$f" - | grep -c '^-[^-]' || true)
  if [ "$n" -gt 0 ]; then
    echo "$f: $n lines"
    differ=$((differ + 1)) lines=$((lines + n))
  fi
done
echo "format: $differ of ${#files[@]} files would change ($lines lines)"
[ "$differ" = 0 ]
