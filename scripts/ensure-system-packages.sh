#!/usr/bin/env bash
# Installs the Debian packages Tidegate needs outside Python, when they are missing and we may install them.
# Without arguments: what the tests and the demo need (redis-server for the embedded stack, openssl for test
# certificates). With arguments: those Debian packages (e.g. the Vulkan driver for building the image data set).
set -euo pipefail
missing=()
if [ $# -eq 0 ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
else
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "error: please install ${missing[*]} (Debian/Ubuntu: apt-get install ${missing[*]}; macOS: brew install redis openssl)" >&2
  exit 1
fi
