#!/usr/bin/env bash
# test_layers.sh — the layers of docs/DESIGN.md hold: a folder of src/ includes only from folders
# below it in the design's picture (data flows down). Every quoted include of every tracked file
# under src/ is read: "FOLDER/name.h" must name a folder of a lower floor than the includer's (the
# three backends, cpu, cuda and vulkan, share a floor and include none of each other, and so do
# the two encoders, vision and audio); a bare "name.h" must be the public lfm2c.h or a file of the
# includer's own folder (CUDA's and Vulkan's sources and shaders include their siblings so). The one exception is the design's: the
# registry, src/core/backend.c, includes the GPU backends' headers to list their tables. The
# floors below are the picture's order; the check also fails when the picture (the " src/NAME/"
# rows of docs/DESIGN.md, top to bottom) lists the folders in another order, or a folder of src/
# has no floor here: a new folder is placed in both. It fails naming each FILE:LINE: INCLUDE.
# usage: bash test_layers.sh [PATH/TO/lfm2c]   (the argument is ignored: ctest passes it)
set -u
cd "$(dirname "$0")/.." || exit 1
# top to bottom, as the picture lists them; folders on one line share a floor
floors='serve
convert
hub
chat
vision audio
cpu cuda vulkan
core
text
formats
base'
# FILE FOLDER: an include of FOLDER that FILE may make although FOLDER is not below it
exceptions='src/core/backend.c cuda
src/core/backend.c vulkan'
declare -A floor_of
n=$(wc -l <<<"$floors")
i=0
while IFS= read -r row; do
  for d in $row; do floor_of[$d]=$((n - i)); done
  i=$((i + 1))
done <<<"$floors"
fail=0
checked=0

# the picture and the floors agree, and every folder of src/ has a floor
picture=$(sed -nE 's#^ src/([a-z_]+)/ .*#\1#p' docs/DESIGN.md | tr '\n' ' ')
ours=$(tr '\n' ' ' <<<"$floors" | tr -s ' ')
[ "${picture% }" = "${ours% }" ] ||
  { echo "FAIL docs/DESIGN.md's picture lists '${picture% }', this check '${ours% }'"; fail=$((fail + 1)); }
files=$(git ls-files 'src/*' 2>/dev/null || find src -type f)
for d in $(sed -E 's#^src/([^/]+)/.*#\1#' <<<"$files" | sort -u); do
  [ -n "${floor_of[$d]:-}" ] || { echo "FAIL src/$d/ has no floor in this check (nor, then, in the picture)"; fail=$((fail + 1)); }
done

# check FILE LINE INCLUDE: prints a failure and returns 1 when the include breaks the layers
check() {
  local f=$1 line=$2 inc=$3 own=${1#src/}
  own=${own%%/*}
  if [[ $inc != */* ]]; then
    [ "$inc" = lfm2c.h ] || [ -f "src/$own/$inc" ] && return 0
    echo "FAIL $f:$line: \"$inc\" is neither lfm2c.h nor a file of src/$own/ (includes name the folder)"
    return 1
  fi
  local to=${inc%%/*}
  if [ -z "${floor_of[$to]:-}" ]; then
    echo "FAIL $f:$line: \"$inc\" names no folder of src/"
    return 1
  fi
  [ "${floor_of[$to]}" -lt "${floor_of[$own]:-0}" ] && return 0
  grep -qxF "$f $to" <<<"$exceptions" && return 0
  [ "$to" = "$own" ] && return 0
  echo "FAIL $f:$line: \"$inc\": src/$own/ includes from src/$to/, which is not below it (docs/DESIGN.md's layers)"
  return 1
}

while IFS= read -r f; do
  [ -f "$f" ] || continue
  checked=$((checked + 1))
  while IFS=: read -r line inc; do
    check "$f" "$line" "$inc" || fail=$((fail + 1))
  done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | sed -E 's/^([0-9]+):[^"]*"([^"]+)".*/\1:\2/')
done <<<"$files"

# the check itself: a core file including chat/, a backend including another, a text file
# including core/ and a bare include of another folder's header must each be refused
probes=0
check src/core/lora_peft.c 1 chat/grammar.h >/dev/null || probes=$((probes + 1))
check src/cpu/forward.c 1 cuda/backend_cuda.h >/dev/null || probes=$((probes + 1))
check src/text/tokenizer.c 1 core/model.h >/dev/null || probes=$((probes + 1))
check src/chat/chat.c 1 model.h >/dev/null || probes=$((probes + 1))
check src/core/model.c 1 text/regex.h >/dev/null || probes=$((probes - 10))
[ "$probes" = 4 ] || { echo "FAIL the check's own probes: $probes of 4 refused as they should"; fail=$((fail + 1)); }

echo "layers: $checked files of src/ checked"
echo "$((fail == 0 ? 1 : 0)) passed, $((fail == 0 ? 0 : 1)) failed"
[ "$fail" = 0 ]
