#!/usr/bin/env bash
# Installs what the build, the tests, the demo or the benchmarks need and is
# missing: Debian packages (apt-get), Python packages (pip), Go modules.
# Idempotent and quiet when everything is already there.
#
#   scripts/bootstrap.sh [go] [test] [bench] [python] [demo]
set -euo pipefail
cd "$(dirname "$0")/.."

want_go=0 want_test=0 want_bench=0 want_python=0
want_demo=0
[ $# -eq 0 ] && set -- go
for a in "$@"; do
  case "$a" in
    go) want_go=1 ;;
    test) want_go=1 want_test=1 ;;
    bench) want_go=1 want_bench=1 ;;
    python) want_python=1 ;;
    demo) want_demo=1 ;;
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
  if [ $apt_updated -eq 0 ]; then apt_run update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt_run install -y -qq "${missing[@]}"
}

# apt_run ARGS...: apt-get ARGS, waiting (up to FFF_APT_LOCK_WAIT seconds,
# default 600) while another package manager holds apt's or dpkg's lock, as
# unattended upgrades do on a freshly booted cloud machine. apt-get's own
# DPkg::Lock::Timeout does not cover the lists lock of `update` on every apt
# version, so the wait is ours: try without waiting, and on a lock error say
# once who holds it and try again.
apt_run() {
  local wait=${FFF_APT_LOCK_WAIT:-600} waited=0 out rc said=0
  while :; do
    rc=0
    out=$($SUDO apt-get -o DPkg::Lock::Timeout=0 "$@" 2>&1 >/dev/null) || rc=$?
    [ $rc -eq 0 ] && return 0
    if ! grep -qiE 'could not get lock|unable to acquire the dpkg frontend lock|unable to lock' <<<"$out"; then
      echo "$out" >&2
      echo "bootstrap: apt-get $* failed (exit $rc)" >&2
      exit 1
    fi
    if [ $waited -ge "$wait" ]; then
      echo "$out" >&2
      echo "bootstrap: another package manager still holds the apt/dpkg lock after ${wait}s; wait for it to finish (or stop it) and re-run" >&2
      exit 1
    fi
    if [ $said -eq 0 ]; then
      local who
      who=$(grep -oE 'held by process [0-9]+ \([^)]*\)' <<<"$out" | head -n1)
      echo "bootstrap: waiting for another package manager to release the apt/dpkg lock${who:+ ($who)}, up to ${wait}s" >&2
      said=1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

if [ $want_go -eq 1 ]; then
  if ! command -v go >/dev/null; then
    echo "bootstrap: Go is not installed; install Go >= 1.26 (https://go.dev/dl) and re-run" >&2; exit 1
  fi
  command -v gcc >/dev/null || apt_install gcc libc6-dev
  go mod download
fi
if [ $want_test -eq 1 ]; then
  # The FUSE tests run standard tools against a mount (tests/fuse_test.go).
  apt_install fio rsync
fi
if [ $want_bench -eq 1 ]; then
  apt_install fio
  # The loader suite's peers (torch_examples/peers.py), in the .venv of
  # `python` (made here if it is not there yet: `make bench` runs
  # `bench python demo`, in that order). The .venv runs Debian's
  # python3-torch 1.13 and numpy 1.24 (--system-site-packages) and pip must
  # never replace them, so the peers go in with --no-deps, and their
  # import-time dependencies (none of which needs torch) under a constraints
  # file pinning the installed torch and numpy: a version that wanted another
  # torch or numpy fails the install instead of upgrading them.
  #   litdata 0.2.47: imports and runs with torch 1.13 (newer releases need
  #     torch >= 2.3); needs lightning-utilities, filelock, tifffile, boto3
  #     at import.
  #   mosaicml-streaming 0.13.0: declares torch<3,>=1.10 and runs with 1.13,
  #     but imports transformers (BatchFeature, in its DataLoader), snappy,
  #     zstd, xxhash and catalogue at import; transformers 4.46.3 is the
  #     last line with numpy<2 wheels that imports here (only its
  #     BatchFeature is used, and torch stays unused by it). Its cloud
  #     clients (google, azure, oci, paramiko) are not needed for local shards.
  #   webdataset 1.0.2: needs braceexpand (numpy, pyyaml are Debian's).
  # Idempotent: nothing happens once the three import.
  apt_install python3-venv python3-numpy python3-torch python3-torchvision python3-pil python3-psutil python3-yaml
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  if ! .venv/bin/python -c 'import litdata, streaming, webdataset' >/dev/null 2>&1; then
    echo "bootstrap: installing the loader benchmark's peers into .venv (litdata, mosaicml-streaming, webdataset)" >&2
    pins=$(mktemp) log=$(mktemp)
    .venv/bin/python -c 'import importlib.metadata as m; [print(p + "==" + m.version(p)) for p in ("torch", "numpy")]' >"$pins"
    torch_before=$(.venv/bin/python -c 'import torch; print(torch.__version__)')
    pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >>"$log" 2>&1; }
    if ! pip_q --no-deps litdata==0.2.47 mosaicml-streaming==0.13.0 webdataset==1.0.2 ||
      ! pip_q -c "$pins" lightning-utilities==0.15.3 filelock tifffile==2024.8.30 'boto3<2' \
        'xxhash<4,>=3' 'zstd<2,>=1.5.2.5' 'python-snappy<1,>=0.6.1' 'catalogue<3,>=2' transformers==4.46.3 \
        braceexpand==0.1.7; then
      cat "$log" >&2; rm -f "$pins" "$log"
      echo "bootstrap: installing the peers failed (output above); the loader suite reports them as skipped" >&2; exit 1
    fi
    rm -f "$pins" "$log"
    torch_after=$(.venv/bin/python -c 'import torch; print(torch.__version__)')
    if [ "$torch_after" != "$torch_before" ]; then
      echo "bootstrap: installing the peers changed torch in .venv ($torch_before -> $torch_after)" >&2; exit 1
    fi
    .venv/bin/python -c 'import litdata, streaming, webdataset' || {
      echo "bootstrap: the peers do not import after installing them" >&2; exit 1; }
  fi
fi
if [ $want_python -eq 1 ]; then
  # The Python package (pybind/fff) in a venv at .venv on Debian's python3,
  # which sees Debian's numpy, pytest and python3-torch (1.13; tests/python
  # runs fff.torch against it).
  # `pip install .` builds libfff.so with Go; it reruns only when the sources
  # it is built from changed. Tests: .venv/bin/python -m pytest tests/python
  apt_install python3-venv python3-numpy python3-pytest python3-pytest-timeout python3-torch
  if ! command -v go >/dev/null; then
    echo "bootstrap: building the Python package needs Go; install Go >= 1.26 (https://go.dev/dl) and re-run" >&2; exit 1
  fi
  command -v gcc >/dev/null || apt_install gcc libc6-dev
  if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
  fi
  py_src_hash() { # the Go packages of libfff.so, the Python sources, the build files
    local dirs
    dirs=$(GOFLAGS="-buildvcs=false" go list -deps -f '{{if not .Standard}}{{if not .Module}}{{.Dir}}{{else if .Module.Main}}{{.Dir}}{{end}}{{end}}' ./libfff/capi) || return 1
    {
      for d in $dirs; do find "$d" -maxdepth 1 -type f \( -name '*.go' -o -name '*.c' -o -name '*.h' \) ! -name '*_test.go'; done
      find pybind -type f \( -name '*.py' -o -name py.typed \)
      echo go.mod go.sum pyproject.toml setup.py MANIFEST.in
    } | tr ' ' '\n' | sort | xargs sha256sum | sha256sum | cut -d' ' -f1
  }
  want_hash=$(py_src_hash)
  if [ ! -f .venv/.fff-src-hash ] || [ "$(cat .venv/.fff-src-hash)" != "$want_hash" ]; then
    echo "bootstrap: installing the fff Python package into .venv (pip install .)" >&2
    log=$(mktemp)
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check . >"$log" 2>&1; then
      cat "$log" >&2; rm -f "$log"
      echo "bootstrap: pip install . failed (output above)" >&2; exit 1
    fi
    rm -f "$log"
    echo "$want_hash" >.venv/.fff-src-hash
  fi
fi
if [ $want_demo -eq 1 ]; then
  # What torch_examples/ needs (make demo): PyTorch 1.13, torchvision,
  # scikit-learn (its bundled digits dataset), Pillow and tqdm, from Debian;
  # the .venv of `python` sees them (--system-site-packages).
  apt_install python3-torch python3-torchvision python3-sklearn python3-pil python3-tqdm
fi
exit 0
