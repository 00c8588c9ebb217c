#!/usr/bin/env bash
# Installs what lfm2c needs to build and test on a fresh Debian machine: as root, or as a user
# with sudo (root needs no sudo, which minimal images lack).
# Idempotent: installs only what is missing.
set -euo pipefail
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: not root and no sudo: run this as root (su -c 'bash scripts/setup.sh')" >&2; exit 1; }
  SUDO=sudo
fi
missing=""
for p in build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libedit-dev python3 python3-jinja2 python3-yaml curl haproxy clang libclang-rt-14-dev libcurl4-openssl-dev chromium; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# node / npm may come from another source (e.g. nodesource, whose nodejs conflicts with Debian's
# npm package): look for the commands, not the Debian packages
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
