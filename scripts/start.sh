#!/usr/bin/env bash
# The first command on a fresh Debian or Ubuntu machine: installs what building needs
# (scripts/setup.sh: as root, or through sudo), builds the CLI and the shared library (build/),
# and starts lfm2c on an LFM2 model pulled from the Hugging Face Hub on first use (default
# LiquidAI/LFM2-1.2B-GGUF, its Q4_K_M file, about 0.7 GB, into ~/.cache/huggingface). Where the
# Hub cannot be reached and the model is not cached, it starts on the bundled random-weight
# fixture instead, and says so: that model prints noise (it shows the build works).
#   bash scripts/start.sh [serve|chat] [MODEL] [lfm2c options...]
#     serve        the HTTP server (OpenAI, Responses, Anthropic, Ollama APIs) and its chat page at
#                  http://127.0.0.1:8080/ (the default; PORT=N for another port)
#     chat         the chat in the terminal
#     MODEL        ORG/NAME[:QUANT] on the Hub, or a .gguf file
#     --no-setup   skip the package check     --build DIR   the build directory (default build)
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
cmd=serve model=LiquidAI/LFM2-1.2B-GGUF build=build setup=1 fixture=tests/data/lfm2-tiny-moe-q4_0.gguf
extra=() positional=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,13p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --no-setup) setup=0 ;;
    --build) [ $# -ge 2 ] || { echo "start: --build needs a directory" >&2; exit 2; }; build=$2; shift ;;
    serve|chat) [ $positional = 0 ] && cmd=$1 || extra+=("$1"); positional=1 ;;
    -*) extra+=("$1") ;;
    *)
      if [ $positional -lt 2 ] && { [ -f "$1" ] || [[ "$1" =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(:[A-Za-z0-9_]+)?$ ]]; }; then
        model=$1 positional=2
      elif [ $positional -lt 2 ] && [ ${#extra[@]} = 0 ]; then
        echo "start: '$1' is neither serve, chat, a model file nor a Hub repository ORG/NAME[:QUANT]" >&2; exit 2
      else extra+=("$1"); fi ;;
  esac
  shift
done
[ $setup = 1 ] && bash scripts/setup.sh
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target lfm2c_cli lfm2c_shared >/dev/null
bin=$build/lfm2c
if [ -f "$model" ]; then path=$model
elif path=$("$bin" pull "$model"); then :
else
  echo "start: $model could not be pulled (above) and is not in the cache: starting on the bundled" \
       "random-weight fixture $fixture instead. It prints noise: it shows the build works." \
       "Run this again with a network for the real model." >&2
  path=$fixture
fi
if [ "$cmd" = serve ]; then
  echo "start: serving $path at http://127.0.0.1:${PORT:-8080}/ (the chat page; Ctrl-C stops it)" >&2
  exec "$bin" serve -m "$path" ${PORT:+--port "$PORT"} "${extra[@]}"
fi
exec "$bin" chat -m "$path" "${extra[@]}"
