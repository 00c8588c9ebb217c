#!/usr/bin/env bash
# build-windows.sh — lfm2c for Windows x64, cross-compiled here with mingw-w64 (issue 81):
#   1. the libraries it needs, from their Debian source packages (deb-src of this machine's own
#      release, Debian's patches applied): zlib, libpng, libjpeg-turbo, libwebp(+demux), giflib,
#      jansson, libmicrohttpd, curl (Schannel: Windows' own TLS, no OpenSSL; http and https only),
#      the audio decoders: libsndfile (WAV; FLAC, Ogg Vorbis and Opus through flac, libogg,
#      libvorbis, opus) and mpg123 (MP3), each a static library built for x86_64-w64-mingw32 into a prefix kept outside the
#      repository, ${XDG_CACHE_HOME:-~/.cache}/lfm2c-windows/KEY, KEY a digest of the packages'
#      versions, the compiler's and this script's recipe version: built once, again only when one
#      of them changes;
#   2. lfm2c against it with cmake/toolchain-mingw64.cmake into build-windows/ (the CLI, the
#      library as lfm2c.dll + its import library liblfm2c.dll.a, the C tests);
#   3. lfm2c-windows-x64.zip: lfm2c.exe, lfm2c.dll, liblfm2c.dll.a, include/lfm2c.h, README.txt.
#      Everything is linked statically (the mingw runtime and winpthreads too), so no other DLL.
# usage: bash scripts/build-windows.sh [--deps-only] [--no-zip]
#   LFM2C_WIN_CACHE=DIR   where the prefixes and the downloaded sources live
#   LFM2C_WIN_BUILD=DIR   the lfm2c build folder (default build-windows)
# Needs (scripts/setup.sh --test installs them): gcc-mingw-w64-x86-64-posix, cmake, ninja-build,
# pkg-config, dpkg-dev (dpkg-source), zip, and a deb-src line for the release (added here, as
# /etc/apt/sources.list.d/lfm2c-deb-src.sources, when missing: that needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=2 # bump when a configure line below changes: the cached prefixes are rebuilt
HOST=x86_64-w64-mingw32
CC=$HOST-gcc-posix
deps_only=0 zip=1
for a in "$@"; do
  case "$a" in
    --deps-only) deps_only=1 ;;
    --no-zip) zip=0 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-windows: unknown option '$a'" >&2; exit 2 ;;
  esac
done
missing=""
for c in $CC cmake ninja pkg-config dpkg-source zip; do command -v "$c" >/dev/null 2>&1 || missing="$missing $c"; done
[ -z "$missing" ] || { echo "build-windows: missing$missing: bash scripts/setup.sh --test installs them" >&2; exit 1; }
jobs=$(nproc)
cache=${LFM2C_WIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lfm2c-windows}
mkdir -p "$cache/src"
t0=$SECONDS
log() { echo "build-windows: $* ($((SECONDS - t0)) s)"; }

# ---- the source packages ----
PKGS="zlib libpng1.6 libjpeg-turbo libwebp giflib jansson libmicrohttpd curl libogg flac libvorbis opus libsndfile mpg123"

# deb-src for the release and mirror this machine's deb lines name (deb822 .sources or one-line lists)
ensure_deb_src() {
  if grep -rqsE '^(deb-src |Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then return; fi
  [ "$(id -u)" = 0 ] || { echo "build-windows: no deb-src line in /etc/apt/sources.list*: add one (as root)" >&2; exit 1; }
  local out=/etc/apt/sources.list.d/lfm2c-deb-src.sources
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1 && grep -qs '^Types: deb$' /etc/apt/sources.list.d/*.sources; then
    # every deb stanza again as deb-src (the same URIs, suites, components, key)
    awk 'BEGIN{RS=""; ORS="\n\n"} /(^|\n)Types: deb(\n|$)/ {sub(/Types: deb/, "Types: deb-src"); print}' \
      $(grep -l '^Types: deb$' /etc/apt/sources.list.d/*.sources) >"$out"
  else
    out=/etc/apt/sources.list.d/lfm2c-deb-src.list
    grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed 's/^deb /deb-src /' >"$out"
  fi
  log "added $out"
  apt-get update -qq
}

# the newest version apt offers whose files the mirror has (a security suite's index can name one
# not there yet): PKG's .dsc into $cache/src
# (a signature the .dsc names but the mirror lacks, mpg123's orig.tar.bz2.asc in bookworm, is not
# needed: dpkg-source --no-check does not read it)
fetch() {
  local p=$1
  ls "$cache/src/${p}_"*.dsc >/dev/null 2>&1 && return
  (cd "$cache/src" && apt-get source --download-only -qq "$p" >/dev/null 2>&1) && return
  have_all "$p" && return
  local v
  for v in $(apt-cache showsrc --only-source "$p" | sed -n 's/^Version: //p' | sort -rV); do
    (cd "$cache/src" && apt-get source --download-only -qq "$p=$v" >/dev/null 2>&1) && return
    have_all "$p" && return
  done
  echo "build-windows: cannot download the Debian source of $p" >&2
  exit 1
}

have_all() { # PKG: a .dsc is here with every file it lists but signatures
  local d f
  d=$(ls "$cache/src/${1}_"*.dsc 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || return 1
  for f in $(sed -n '/^Files:/,/^[^ ]/s/^ [0-9a-f]\{32\} [0-9]* //p' "$d"); do
    case "$f" in *.asc) ;; *) [ -f "$cache/src/$f" ] || return 1 ;; esac
  done
}

ensure_deb_src
[ -n "$(ls "$cache"/src/*.dsc 2>/dev/null)" ] || apt-get update -qq 2>/dev/null || true
for p in $PKGS; do fetch "$p"; done
dsc() { ls "$cache/src/${1}_"*.dsc | sort -V | tail -1; }
versions=$(for p in $PKGS; do basename "$(dsc "$p")" .dsc; done | tr '\n' ' ')
key=$(printf '%s %s recipe %s\n' "$versions" "$($CC -dumpfullversion)" "$RECIPE" | sha256sum | cut -c1-16)
prefix=$cache/$key/prefix
log "sources: $versions; prefix $prefix"

# ---- building them (each into $prefix, static) ----
work=$cache/$key/work
unpack() { # PKG -> its unpacked tree with Debian's patches, echoed
  local d=$work/$1
  if [ ! -d "$d" ]; then
    mkdir -p "$work"
    dpkg-source --no-check -x "$(dsc "$1")" "$d" >/dev/null
  fi
  echo "$d"
}
cmake_dep() { # SRC BUILD [cmake args]: configure, build and install with the cross compiler
  local src=$1 b=$2
  shift 2
  cmake -S "$src" -B "$b" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-mingw64.cmake" \
    -DLFM2C_WIN_PREFIX="$prefix" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DCMAKE_POLICY_DEFAULT_CMP0077=NEW "$@" >"$b.log" 2>&1 ||
    { tail -30 "$b.log"; exit 1; }
  cmake --build "$b" -j"$jobs" >>"$b.log" 2>&1 && cmake --install "$b" >>"$b.log" 2>&1 || { tail -30 "$b.log"; exit 1; }
}
pc() { # NAME VERSION LIBS [CFLAGS]: a pkg-config file for a library built without one
  cat >"$prefix/lib/pkgconfig/$1.pc" <<EOF
prefix=$prefix
Name: $1
Description: $1 (lfm2c's Windows build)
Version: $2
Libs: -L\${prefix}/lib $3
Cflags: -I\${prefix}/include ${4:-}
EOF
}

objs() { # NAME SRCDIR FILE...: compiles each SRCDIR/FILE.c into lib/libNAME.a (libraries without CMake)
  local name=$1 dir=$2 f o=()
  shift 2
  for f in "$@"; do
    $CC -O2 -I"$dir" -c "$dir/$f.c" -o "$work/$name-$f.o" 2>>"$work/$name.log" || { tail -20 "$work/$name.log"; return 1; }
    o+=("$work/$name-$f.o")
  done
  $HOST-ar rcs "$prefix/lib/lib$name.a" "${o[@]}"
}
build_zlib() {
  local s
  s=$(unpack zlib)
  objs z "$s" adler32 compress crc32 deflate gzclose gzlib gzread gzwrite infback inffast inflate inftrees trees \
    uncompr zutil || return 1
  cp "$s/zlib.h" "$s/zconf.h" "$prefix/include/"
  pc zlib "$(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/\1/p' "$s/zlib.h")" -lz
}
build_png() {
  cmake_dep "$(unpack libpng1.6)" "$work/png-build" -DPNG_SHARED=OFF -DPNG_TESTS=OFF -DPNG_EXECUTABLES=OFF \
    -DPNG_TOOLS=OFF -DZLIB_ROOT="$prefix"
}
build_jpeg() {
  # no SIMD (it needs nasm): the decoder runs on images of a few MB once per request
  cmake_dep "$(unpack libjpeg-turbo)" "$work/jpeg-build" -DENABLE_SHARED=OFF -DWITH_SIMD=OFF -DWITH_TURBOJPEG=OFF \
    -DWITH_JPEG8=OFF -DCMAKE_INSTALL_LIBDIR="$prefix/lib" -DCMAKE_INSTALL_BINDIR="$work/jpeg-bin" \
    -DCMAKE_INSTALL_DOCDIR="$work/jpeg-doc" -DCMAKE_INSTALL_MANDIR="$work/jpeg-man"
}
build_webp() {
  cmake_dep "$(unpack libwebp)" "$work/webp-build" -DWEBP_BUILD_ANIM_UTILS=OFF -DWEBP_BUILD_CWEBP=OFF \
    -DWEBP_BUILD_DWEBP=OFF -DWEBP_BUILD_GIF2WEBP=OFF -DWEBP_BUILD_IMG2WEBP=OFF -DWEBP_BUILD_VWEBP=OFF \
    -DWEBP_BUILD_WEBPINFO=OFF -DWEBP_BUILD_WEBPMUX=OFF -DWEBP_BUILD_EXTRAS=OFF -DWEBP_BUILD_LIBWEBPMUX=OFF \
    -DWEBP_USE_THREAD=OFF
}
build_gif() { # giflib has a plain Makefile
  local s
  s=$(unpack giflib)
  objs gif "$s" dgif_lib egif_lib gifalloc gif_err gif_font gif_hash openbsd-reallocarray quantize || return 1
  cp "$s/gif_lib.h" "$prefix/include/"
}
build_jansson() {
  cmake_dep "$(unpack jansson)" "$work/jansson-build" -DJANSSON_BUILD_DOCS=OFF -DJANSSON_EXAMPLES=OFF \
    -DJANSSON_WITHOUT_TESTS=ON -DJANSSON_BUILD_SHARED_LIBS=OFF -DUSE_URANDOM=OFF
  # its internal globals (utf8_encode, hashtable_*, ...) would meet lfm2c's own in one static link:
  # renamed jansson_* (the json_* API is untouched)
  $HOST-nm -g --defined-only "$prefix/lib/libjansson.a" | awk 'NF == 3 && $3 !~ /^(json|_|\.)/ {print $3 " jansson_" $3}' |
    sort -u >"$work/jansson.syms"
  $HOST-objcopy --redefine-syms="$work/jansson.syms" "$prefix/lib/libjansson.a"
}
build_mhd() { # autotools: the server's HTTP only (no TLS: lfm2c serves plain HTTP behind a proxy)
  local s b=$work/mhd-build
  s=$(unpack libmicrohttpd)
  mkdir -p "$b"
  (cd "$b" && "$s/configure" --host=$HOST CC=$CC --prefix="$prefix" --enable-static --disable-shared \
    --disable-https --disable-doc --disable-examples --disable-curl --disable-postprocessor \
    --disable-dauth --disable-bauth --disable-httpupgrade --disable-nls --without-gnutls \
    --disable-dependency-tracking >"$b.log" 2>&1 && make -j"$jobs" -C "$b/src/microhttpd" >>"$b.log" 2>&1 &&
    make -C "$b/src/microhttpd" install >>"$b.log" 2>&1 && make -C "$b/src/include" install >>"$b.log" 2>&1) ||
    { tail -30 "$b.log"; return 1; }
  pc libmicrohttpd "$(sed -n 's/^Version: //p' "$b/libmicrohttpd.pc")" "-lmicrohttpd -lws2_32" # (its own names no winsock)
}
build_curl() { # http and https (Schannel) only: `pull` and the server's image URLs
  cmake_dep "$(unpack curl)" "$work/curl-build" -DCURL_USE_SCHANNEL=ON -DCURL_USE_OPENSSL=OFF -DHTTP_ONLY=ON \
    -DBUILD_CURL_EXE=OFF -DBUILD_TESTING=OFF -DCURL_USE_LIBSSH2=OFF -DUSE_LIBIDN2=OFF -DCURL_ZLIB=OFF \
    -DCURL_BROTLI=OFF -DCURL_ZSTD=OFF -DUSE_NGHTTP2=OFF -DENABLE_UNIX_SOCKETS=OFF -DCURL_DISABLE_LDAP=ON \
    -DCURL_DISABLE_NTLM=ON -DCURL_DISABLE_PROGRESS_METER=ON -DENABLE_MANUAL=OFF -DCURL_CA_PATH=none \
    -DCURL_CA_BUNDLE=none || return 1
  # its .pc names the compiler's own runtime libraries (CMake would take winpthreads' DLL import
  # library for -lpthread) and not CURL_STATICLIB: the static library's needs alone
  pc libcurl "$(sed -n 's/^Version: //p' "$prefix/lib/pkgconfig/libcurl.pc")" \
    "-lcurl -lws2_32 -lcrypt32 -lbcrypt -ladvapi32 -lsecur32" -DCURL_STATICLIB
}
# The audio decoders (src/audio/decode.c): libsndfile with the Xiph codecs (FLAC, Ogg Vorbis, Opus;
# no MP3 through it: lfm2c reads MP3 with libmpg123 itself), each with its own CMake, no programs,
# tests or documents, no stack protector / fortify (mingw-w64 would need libssp's DLL for them).
# Their project() lines name no language, so C++ too, for which there is no compiler here (only
# their tests and flac's C++ binding are C++): made C alone (c_only, on the unpacked tree).
c_only() {
  sed -i -E -e 's/^(project\([A-Za-z_]+( VERSION [0-9.]+)?)\)/\1 LANGUAGES C)/' -e '/check_cxx_compiler_flag/d' \
    "$1/CMakeLists.txt"
  grep -q '^project(.*LANGUAGES C)' "$1/CMakeLists.txt"
}
build_ogg() {
  local s
  s=$(unpack libogg) && c_only "$s" || return 1
  cmake_dep "$s" "$work/ogg-build" -DBUILD_TESTING=OFF -DINSTALL_DOCS=OFF
}
build_flac() {
  local s
  s=$(unpack flac) && c_only "$s" || return 1
  cmake_dep "$s" "$work/flac-build" -DBUILD_CXXLIBS=OFF -DBUILD_PROGRAMS=OFF -DBUILD_EXAMPLES=OFF \
    -DBUILD_TESTING=OFF -DBUILD_DOCS=OFF -DINSTALL_MANPAGES=OFF -DWITH_STACK_PROTECTOR=OFF -DWITH_FORTIFY_SOURCE=OFF
}
build_vorbis() {
  local s
  s=$(unpack libvorbis) && c_only "$s" || return 1
  cmake_dep "$s" "$work/vorbis-build"
}
build_opus() { # (1.3.1's tarball lacks the file that only picks a default build type: it is given here)
  local s
  s=$(unpack opus) || return 1
  [ -f "$s/opus_buildtype.cmake" ] || echo "# the build type: build-windows.sh gives it" >"$s/opus_buildtype.cmake"
  cmake_dep "$s" "$work/opus-build" -DOPUS_STACK_PROTECTOR=OFF -DOPUS_BUILD_PROGRAMS=OFF -DBUILD_TESTING=OFF
}
build_sndfile() { # the codecs through their CMake packages (FLAC's carries FLAC__NO_DLL: a static libFLAC)
  local s
  s=$(unpack libsndfile) && c_only "$s" || return 1
  cmake_dep "$s" "$work/sndfile-build" -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON \
    -DBUILD_PROGRAMS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_TESTING=OFF -DENABLE_CPACK=OFF -DENABLE_PACKAGE_CONFIG=OFF \
    -DINSTALL_MANPAGES=OFF -DENABLE_EXTERNAL_LIBS=ON -DENABLE_MPEG=OFF -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_Speex=ON -DCMAKE_DISABLE_FIND_PACKAGE_mp3lame=ON -DCMAKE_DISABLE_FIND_PACKAGE_Mpg123=ON || return 1
  grep -q '^Requires.private:.*flac' "$prefix/lib/pkgconfig/sndfile.pc" ||
    { echo "build-windows: libsndfile was built without FLAC / Vorbis / Opus" >&2; return 1; }
}
build_mpg123() { # its CMake port (ports/cmake): the library alone; the decoders chosen at run time as on Linux
  cmake_dep "$(unpack mpg123)/ports/cmake" "$work/mpg123-build" -DBUILD_LIBOUT123=OFF || return 1
  # its .pc names no private libraries: the wide-character file names' shlwapi
  pc libmpg123 "$(sed -n 's/^Version: //p' "$prefix/lib/pkgconfig/libmpg123.pc")" "-lmpg123 -lshlwapi"
}

if [ ! -f "$cache/$key/done" ]; then
  log "building the libraries (once for these versions)"
  rm -rf "$cache/$key"
  mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$work"
  for b in zlib png jpeg webp gif jansson mhd curl ogg flac vorbis opus sndfile mpg123; do
    "build_$b" || { echo "build-windows: building $b failed (logs in $work)" >&2; exit 1; }
    log "built $b"
  done
  rm -rf "$work"
  echo "$versions" >"$cache/$key/done"
  # older prefixes (other versions) are not needed any more
  for d in "$cache"/*/; do [ "$d" = "$cache/$key/" ] || [ "$d" = "$cache/src/" ] || rm -rf "$d"; done
else
  log "the libraries are cached"
fi
[ "$deps_only" = 1 ] && exit 0

# ---- lfm2c ----
build=${LFM2C_WIN_BUILD:-build-windows}
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw64.cmake -DLFM2C_WIN_PREFIX="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 || { tail -30 "$build.log"; exit 1; }
cmake --build "$build" -j"$jobs" || exit 1
log "built lfm2c in $build"
[ "$zip" = 1 ] || exit 0
stage=$build/lfm2c-windows-x64
rm -rf "$stage" "$build/lfm2c-windows-x64.zip"
mkdir -p "$stage/include"
cp "$build/lfm2c.exe" "$build/lfm2c.dll" "$build/liblfm2c.dll.a" "$stage/"
cp include/lfm2c.h "$stage/include/"
cat >"$stage/README.txt" <<'EOF'
lfm2c for Windows x64 (the repository's README.md and docs/ say more)

  lfm2c.exe run LiquidAI/LFM2-1.2B-GGUF "Explain KV caches in two sentences."
  lfm2c.exe serve LiquidAI/LFM2-1.2B-GGUF       (http://127.0.0.1:8080/)

Models are kept in %USERPROFILE%\.cache\huggingface (HF_HOME moves it). The library: lfm2c.dll,
its import library liblfm2c.dll.a and include\lfm2c.h (gcc app.c -Iinclude -L. -llfm2c).
No other DLL is needed. GPU backends are not in the Windows build yet.
EOF
sed -i 's/$/\r/' "$stage/README.txt"
(cd "$build" && zip -qr lfm2c-windows-x64.zip lfm2c-windows-x64)
log "$build/lfm2c-windows-x64.zip: $(du -h "$build/lfm2c-windows-x64.zip" | cut -f1)"
