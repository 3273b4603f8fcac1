#!/usr/bin/env bash
# Installs the few Debian packages Tidegate needs outside Python, when they are missing and we may install them.
#   redis-server : the embedded stack's Redis (tests, demo)
#   openssl      : test certificates for the TLS tests
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
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
