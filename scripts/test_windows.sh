#!/usr/bin/env bash
# test_windows.sh — the Windows stage of the test command (scripts/test.sh runs it; it runs alone
# too; LFM2C_SKIP_WINDOWS=1 skips it there): builds lfm2c for Windows x64 with
# scripts/build-windows.sh (the libraries from their Debian sources, cached outside the
# repository, then lfm2c.exe, lfm2c.dll and the C tests) and runs under Wine:
#   1. the C unit tests (ctest runs them under Wine: cmake/toolchain-mingw64.cmake), among them the
#      platform layer's own (test_os), every kernel table this CPU has against the scalar truth
#      bit for bit (test_kernels, test_kernels_attn: AVX-512, AVX2), and every fixture's golden
#      logits (test_model); then test_model again on the AVX2 table (LFM2C_ISA), so both SIMD
#      tables the Windows build can choose meet the goldens (the scalar table is test_kernels'
#      truth; its test_model run takes minutes under Wine and stays with the Linux stages);
#   2. the CLI with lfm2c.exe in place of the Linux binary (a wrapper, build-windows/lfm2c-wine,
#      runs it under Wine): `chat`'s suite (a scripted session, slash commands, thinking, Ctrl-C
#      at the prompt through a pipe: the SIGINT is a CTRL_C_EVENT there too; test_chat_cli),
#      `quantize` byte for byte (test_quantize_cli), the tokenizer (test_tokenize_cli),
#      `transcribe` / `run --audio` (test_audio_cli; test_audio among the C tests checks the
#      decoded samples against libmtmd's goldens), scripts/test_windows_cli.sh: `run` greedy
#      equal to the Linux build's, `bench`, `pull` from the loopback Hub stand-in and `run -hf`
#      from the cache, `transcribe` of WAV, FLAC, MP3, Ogg Vorbis and Opus clips equal to the
#      Linux build's; and test_pull. (LFM2C_TEST_WINE=1 tells the suites where Wine differs from
#      Windows or Linux: a pulled file is a hard link to its blob, Wine makes no symbolic links;
#      its console's line read does not end on a Ctrl-C; a POSIX file-size limit kills it.)
#   3. `lfm2c.exe serve` driven by the Linux clients of the server suite (test_server.sh's quick
#      part: the OpenAI SDK suite with streaming, cancellation by a client that leaves, the
#      Anthropic and Ollama clients, raw HTTP) and its clean shutdown on Ctrl-C: the suite's
#      SIGINT to the process is what Wine turns into a console CTRL_C_EVENT for the handlers
#      SetConsoleCtrlHandler installed (a new thread in the program, as a Ctrl-C typed into the
#      console would), so the Windows path of src/base/os_win32.c (os_stop_wait) is what stops it.
# It prints its time at the end; the first run on a bare machine also builds the libraries.
# usage: bash scripts/test_windows.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
B=${LFM2C_WIN_BUILD:-build-windows}
export LFM2C_WIN_BUILD=$B
missing=""
command -v wine >/dev/null 2>&1 || [ -x /usr/lib/wine/wine64 ] || missing="$missing wine64"
[ -z "$missing" ] || { echo "windows: missing$missing: scripts/setup.sh --test installs it (LFM2C_SKIP_WINDOWS=1 skips this stage)" >&2; exit 1; }
bash scripts/build-windows.sh
echo "windows: built in $((SECONDS - start)) s"

# Wine: a prefix of its own under the build (made on first use, ~15 s), kept running for the
# stage (each program then starts in a fraction of a second), no Mono / Gecko installers.
export WINEPREFIX=$PWD/$B/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
wine=$(command -v wine64 || command -v wine || echo /usr/lib/wine/wine64)
[ -d "$WINEPREFIX" ] || wineboot -i >/dev/null 2>&1 || true
wineserver -p 2>/dev/null || true
trap 'wineserver -k >/dev/null 2>&1 || true' EXIT
cat >"$B/lfm2c-wine" <<EOF
#!/usr/bin/env bash
# lfm2c.exe under Wine, for the Linux test scripts (made by scripts/test_windows.sh)
export WINEPREFIX="$WINEPREFIX" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
exec "$wine" "$PWD/$B/lfm2c.exe" "\$@"
EOF
chmod +x "$B/lfm2c-wine"

re() { echo "^($(echo "$*" | tr ' ' '|'))\$"; }
fails=0
stage() { # NAME COMMAND...: runs it, counts a failure, says its time
  local t0=$SECONDS name=$1
  shift
  if "$@"; then echo "windows: $name passed ($((SECONDS - t0)) s)"; else
    echo "windows: $name FAILED ($((SECONDS - t0)) s)"
    fails=$((fails + 1))
  fi
}

c_tests="test_os test_buf test_hugemem test_threadpool test_kernels test_kernels_attn test_kernels_choose test_model
         test_matmul test_session test_gguf test_gguf_write test_name_index test_sampler test_tokenizer
         test_tokenizer_api test_lfm2_arch test_sha256 test_grammar test_toolcall test_reasoning test_jinja
         test_convert test_public_api test_image test_gen_state test_job_event test_audio"
stage "C tests" bash -c "cd $B && LFM2C_TEST_QUICK=1 ctest --output-on-failure -j$(nproc) -R '$(re $c_tests)'"
echo "windows: kernel tables tested: $(sed -n 's/^table: //p' "$B/Testing/Temporary/LastTest.log" | sort -u | tr '\n' ' ')"
for isa in avx2; do
  stage "test_model with LFM2C_ISA=$isa" bash -c "cd $B && LFM2C_ISA=$isa LFM2C_TEST_QUICK=1 ctest --output-on-failure -R '^test_model\$'"
done

# (from tests/, as ctest runs them)
wrapper=$PWD/$B/lfm2c-wine
stage "chat: a scripted session, Ctrl-C through a pipe (test_chat_cli)" bash -c "cd tests && LFM2C_TEST_WINE=1 bash ./test_chat_cli.sh '$wrapper'"
stage "quantize byte for byte (test_quantize_cli)" bash -c "cd tests && bash ./test_quantize_cli.sh '$wrapper'"
stage "tokenize (test_tokenize_cli)" bash -c "cd tests && bash ./test_tokenize_cli.sh '$wrapper'"
stage "transcribe / run --audio (test_audio_cli)" bash -c "cd tests && bash ./test_audio_cli.sh '$wrapper'"
stage "run / bench / pull / audio decoders" bash scripts/test_windows_cli.sh "$wrapper"
stage "pull, list, rm, -hf against the Hub stand-in (test_pull)" bash -c "cd tests && LFM2C_TEST_WINE=1 bash ./test_pull.sh '$wrapper'"
stage "the server under the Linux clients" bash -c "cd tests && LFM2C_TEST_SERVE_QUICK=1 LFM2C_TEST_STOP_SIGNAL=INT bash ./test_server.sh '$wrapper'"

echo "windows: stage done in $((SECONDS - start)) s, $fails part(s) failed"
[ "$fails" = 0 ]
