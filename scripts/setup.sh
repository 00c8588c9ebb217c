#!/usr/bin/env bash
# Installs what lfm2c needs to build and test on a fresh Debian machine (run as root or with sudo).
set -euo pipefail
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
pkgs="build-essential cmake pkg-config libjansson-dev libpcre2-dev libmicrohttpd-dev libedit-dev
      python3 python3-jinja2 nodejs npm curl"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
