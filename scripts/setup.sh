#!/usr/bin/env bash
# Installs what lfm2c needs on a fresh Debian machine: as root, or as a user with sudo (root needs
# no sudo, which minimal images lack). Idempotent: installs only what is missing.
#   bash scripts/setup.sh          what building needs (a C compiler, cmake, the libraries)
#   bash scripts/setup.sh --test   also everything scripts/test.sh needs (node/npm, python3,
#                                  chromium, haproxy, clang's fuzzer runtime, clang-format, the ARM64 cross
#                                  compiler and qemu, mingw-w64 and Wine)
set -euo pipefail
test_deps=0
for a in "$@"; do
  case "$a" in
    --test) test_deps=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown option '$a' (--test adds what the tests need)" >&2; exit 2 ;;
  esac
done
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: not root and no sudo: run this as root (su -c 'bash scripts/setup.sh')" >&2; exit 1; }
  SUDO=sudo
fi
# installed PKG[:ARCH]: dpkg has PKG installed for ARCH (default: this machine's architecture, or
# "all"). Not `dpkg -s PKG`: it fails (ambiguous) once PKG is installed for two architectures, as
# libjansson-dev is with libjansson-dev:arm64, and it succeeds for a removed package whose
# config files remain. (grep without -q reads all of dpkg-query's lines: no SIGPIPE for pipefail.)
native=$(dpkg --print-architecture)
installed() {
  local name=${1%%:*} arch=${1#*:}
  [ "$arch" = "$1" ] && arch=$native
  dpkg-query -W -f='${Architecture} ${db:Status-Status}\n' "$name" 2>/dev/null | grep -E "^($arch|all) installed$" >/dev/null
}
missing=""
# the image decoders (src/vision/image.c): JPEG, PNG, WebP (libwebp-dev: also libwebpdemux, the first
# frame of an animated one), GIF; the audio decoders (src/audio/decode.c): libsndfile (WAV, FLAC, Ogg Vorbis /
# Opus), libmpg123 (MP3, asked directly to be quiet)
for p in build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libedit-dev libcurl4-openssl-dev \
         libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev libsndfile1-dev libmpg123-dev; do
  installed "$p" || missing="$missing $p"
done
add_arm64=0
if [ "$test_deps" = 1 ]; then
for p in python3 python3-jinja2 python3-yaml python3-pip python3-venv python3-pytest curl haproxy clang clang-format libclang-rt-14-dev chromium; do
  installed "$p" || missing="$missing $p"
done
# The Vulkan backend (built where these are found) and lavapipe, the CPU Vulkan driver its tests
# run on where there is no GPU: the loader and headers, the shader compiler, the driver.
for p in libvulkan-dev glslc glslang-tools spirv-tools mesa-vulkan-drivers vulkan-tools; do
  installed "$p" || missing="$missing $p"
done
# The ARM64 stage of scripts/test.sh: the cross compiler and its C library, qemu-aarch64 (from
# qemu-user, or qemu-user-static's qemu-aarch64-static), and jansson for arm64 from Debian's
# multiarch archive, which needs the arm64 architecture added to dpkg before apt-get update.
for p in gcc-aarch64-linux-gnu libc6-dev-arm64-cross; do
  installed "$p" || missing="$missing $p"
done
command -v qemu-aarch64 >/dev/null 2>&1 || command -v qemu-aarch64-static >/dev/null 2>&1 || missing="$missing qemu-user"
if ! installed libjansson-dev:arm64; then
  missing="$missing libjansson-dev:arm64"
  dpkg --print-foreign-architectures | grep -qx arm64 || add_arm64=1
fi
# The Windows stage (scripts/test_windows.sh, scripts/build-windows.sh): the mingw-w64 cross
# compiler (its POSIX-threads flavour: winpthreads), Wine to run what it builds, and what building
# the libraries from their Debian sources takes (dpkg-source, ninja; zip for the download).
for p in gcc-mingw-w64-x86-64-posix wine64 ninja-build dpkg-dev zip; do
  installed "$p" || missing="$missing $p"
done
# node / npm may come from another source (e.g. nodesource, whose nodejs conflicts with Debian's
# npm package): look for the commands, not the Debian packages
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  if [ "$add_arm64" = 1 ]; then
    echo "setup: dpkg --add-architecture arm64 (for libjansson-dev:arm64)"
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
