#!/usr/bin/env bash
# test_platform.sh — the platform layer stays one room (issue 81): no C file under src/ or tools/
# includes a system header that exists on one platform only (unistd.h, sys/mman.h, dirent.h,
# sys/socket.h, windows.h, ...) except the layer itself, src/base/os.h, os_net.h, os_posix.c and
# os_win32.c. Every <...> include must be a standard C header, one both POSIX and mingw-w64 have
# (pthread.h: winpthreads; sys/types.h), a compiler intrinsic header, or a library the build
# finds on every platform (jansson, libmicrohttpd, libcurl, the image and audio decoders, Vulkan, libedit,
# CUDA). A new system header goes into the layer (a function in os.h) rather than on this list.
# It fails naming each FILE:LINE: HEADER.
# usage: bash test_platform.sh [PATH/TO/lfm2c]   (the argument is ignored: ctest passes it)
set -u
cd "$(dirname "$0")/.." || exit 1
allowed='assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h locale.h math.h
setjmp.h signal.h stdalign.h stdarg.h stdatomic.h stdbool.h stddef.h stdint.h stdio.h stdlib.h
stdnoreturn.h string.h tgmath.h time.h uchar.h wchar.h wctype.h
pthread.h sys/types.h
immintrin.h x86intrin.h cpuid.h arm_neon.h
jansson.h microhttpd.h curl/curl.h png.h jpeglib.h gif_lib.h webp/decode.h webp/demux.h sndfile.h mpg123.h vulkan/vulkan.h
editline/readline.h cuda_runtime.h cuda_fp16.h cuda_bf16.h cublasLt.h'
layer='src/base/os.h src/base/os_net.h src/base/os_posix.c src/base/os_win32.c'
fail=0
checked=0
while IFS= read -r f; do
  case " $layer " in *" $f "*) continue ;; esac
  checked=$((checked + 1))
  while IFS=: read -r line hdr; do
    if ! grep -qxF -- "$hdr" <(tr ' ' '\n' <<<"$allowed"); then
      echo "FAIL $f:$line: <$hdr> exists on one platform only: use base/os.h (or add it there)"
      fail=$((fail + 1))
    fi
  done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*<' "$f" | sed -E 's/^([0-9]+):.*<([^>]+)>.*/\1:\2/')
done < <(git ls-files 'src/*.c' 'src/*.h' 'tools/*.c' 'tools/*.h' 2>/dev/null || find src tools -name '*.[ch]')
# the check itself: a file that includes unistd.h must be found
probe=$(printf '#include <unistd.h>\n' | grep -c -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*<')
[ "$probe" = 1 ] || { echo "FAIL the include pattern does not match"; fail=$((fail + 1)); }
echo "platform: $checked C files outside the layer checked"
echo "$((fail == 0 ? 1 : 0)) passed, $((fail == 0 ? 0 : 1)) failed"
[ "$fail" = 0 ]
