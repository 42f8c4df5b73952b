#!/usr/bin/env bash
# The main job on one machine (make demo):
#   1. set up what is missing: bin/fff and bin/fffd, the fff Python package in
#      .venv, PyTorch/torchvision/scikit-learn/Pillow/tqdm from Debian
#      (scripts/bootstrap.sh python demo);
#   2. start a single-node cluster (fff up --daemon) with its data and its
#      cluster record in a temporary directory, so a cluster of your own
#      (~/.local/share/fff, ~/.config/fff) is left alone;
#   3. torch_examples/digits.py: pack scikit-learn's digits into FFRecord files
#      in fff and train a small CNN through fff.torch.DataLoader (> 90% test
#      accuracy, or the demo fails);
#   4. torch_examples/imagenet_style.py --quick: 2,000 JPEGs of ~100 KiB packed
#      into fff, fff.torch.DataLoader next to torchvision's ImageFolder on the
#      same files on local disk, raw and with decode + augmentation;
#   5. torch_examples/train_resnet.py: ResNet-18 training steps over the same
#      images through each loader, images/s and the share of each step spent
#      waiting for data;
#   6. the CLI on what the examples wrote: fff ls, fff ffr inspect/verify/cat,
#      and a flipped byte that fff ffr verify catches;
#   7. stop the cluster (always, also on failure or Ctrl-C).
# DEMO_IMAGES (default 2000) and DEMO_ARGS (extra imagenet_style.py options)
# change steps 4 and 5; DEMO_TRAIN_STEPS (default 10) the steps measured in
# step 5; DEMO_KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
FFF=${FFF:-$root/bin/fff}
PY=$root/.venv/bin/python
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
t_start=$(date +%s)

step "setting up: bin/fff, the fff Python package in .venv, torch and friends (scripts/bootstrap.sh python demo)"
if [ ! -x "$FFF" ] || [ ! -x "$(dirname "$FFF")/fffd" ]; then
  make -s build
fi
scripts/bootstrap.sh python demo
"$PY" - <<'PY'
import sys
import fff, numpy, torch
try:
    import torchvision; tv = torchvision.__version__
except ImportError:
    tv = "missing"
print(f"python {sys.version.split()[0]}, fff {fff.__version__}, numpy {numpy.__version__}, "
      f"torch {torch.__version__}, torchvision {tv}")
PY

work=$(mktemp -d "${TMPDIR:-/tmp}/fff-demo.XXXXXX")
export XDG_CONFIG_HOME="$work/config"   # keep the demo's cluster record out of ~/.config
unset FFF_CLUSTER FFF_TOKEN
up=0
cleanup() {
  local rc=$?
  if [ $up -eq 1 ]; then
    step "stopping the cluster (fff down)"
    "$FFF" down --data "$work/cluster" || true
  fi
  if [ "${DEMO_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting a single-node cluster: fff up --daemon --data $work/cluster"
up=1
"$FFF" up --daemon --data "$work/cluster"
"$FFF" mkdir -p /demo

step "(a) digits: scikit-learn's 8x8 digits packed into fff, a small CNN trained through fff.torch.DataLoader"
"$PY" torch_examples/digits.py --path-prefix fff:///demo/digits

step "(b) ImageNet-style pipeline: JPEGs packed into fff, fff.torch.DataLoader next to torchvision's ImageFolder"
n=${DEMO_IMAGES:-2000}
jpegs="${XDG_CACHE_HOME:-$HOME/.cache}/fff-examples/imagenet-style-$n"   # kept: the next demo reuses them
# shellcheck disable=SC2086 # DEMO_ARGS is a list of options
"$PY" torch_examples/imagenet_style.py --quick --num-images "$n" --jpeg-dir "$jpegs" \
  --dest fff:///demo/imagenet-style ${DEMO_ARGS:-}

step "(c) ResNet-18 training steps through each loader: images/s and the share of step time spent waiting for data"
"$PY" torch_examples/train_resnet.py --num-images "$n" --jpeg-dir "$jpegs" --dest fff:///demo/imagenet-style \
  --steps "${DEMO_TRAIN_STEPS:-10}"

step "the namespace the examples wrote: fff ls -l"
"$FFF" ls -l /demo /demo/digits /demo/imagenet-style

step "fff ffr inspect and verify (every checksum) through the cluster"
"$FFF" ffr inspect fff:///demo/imagenet-style
"$FFF" ffr verify fff:///demo/digits/train.ffr fff:///demo/digits/test.ffr fff:///demo/imagenet-style

step "fff ffr cat: sample 1234 is its class index (2 bytes) + the JPEG file that ImageFolder reads"
key=$("$FFF" ffr cat --key fff:///demo/imagenet-style 1234)
"$FFF" ffr cat fff:///demo/imagenet-style 1234 | tail -c +3 | cmp - "$jpegs/$key" &&
  echo "sample 1234 = $key: identical"

step "a flipped byte inside a sample is caught and named"
"$FFF" ffr pack "$jpegs/class_00" -o "$work/class0.ffr" --format v1 >/dev/null
"$PY" - "$work/class0.ffr" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(-1000, 2); b = f.read(1); f.seek(-1000, 2); f.write(bytes([b[0] ^ 0xFF]))
PY
if "$FFF" ffr verify "$work/class0.ffr"; then echo "verify missed the damage" >&2; exit 1; fi
echo "verify exited non-zero, as it must"

step "fff status"
"$FFF" status

step "demo complete in $(($(date +%s) - t_start))s"
echo "kept for the next run: the generated JPEGs, $(du -sh "$jpegs" 2>/dev/null | cut -f1) in $jpegs (rm -rf \"$jpegs\" frees them)"
