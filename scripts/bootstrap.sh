#!/usr/bin/env bash
# Installs what the build, the tests, the demo or the benchmarks need and is
# missing: Debian packages (apt-get), Python packages (pip), Go modules.
# Idempotent and quiet when everything is already there.
#
#   scripts/bootstrap.sh [go] [bench] [python]
set -euo pipefail
cd "$(dirname "$0")/.."

want_go=0 want_bench=0 want_python=0
[ $# -eq 0 ] && set -- go
for a in "$@"; do
  case "$a" in
    go) want_go=1 ;;
    bench) want_go=1 want_bench=1 ;;
    python) want_python=1 ;;
    *) echo "bootstrap: unknown component '$a'" >&2; exit 2 ;;
  esac
done

apt_updated=0
apt_install() { # apt_install PACKAGE... : installs the packages not yet installed
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "bootstrap: need root to install ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1
    fi
  else SUDO=; fi
  echo "bootstrap: installing ${missing[*]}" >&2
  if [ $apt_updated -eq 0 ]; then $SUDO apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ $want_go -eq 1 ]; then
  if ! command -v go >/dev/null; then
    echo "bootstrap: Go is not installed; install Go >= 1.26 (https://go.dev/dl) and re-run" >&2; exit 1
  fi
  command -v gcc >/dev/null || apt_install gcc libc6-dev
  go mod download
fi
if [ $want_bench -eq 1 ]; then
  apt_install fio
fi
if [ $want_python -eq 1 ]; then
  python3 -c 'import numpy' 2>/dev/null || python3 -m pip install -q numpy
fi
exit 0
