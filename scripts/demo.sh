#!/usr/bin/env bash
# The main job on one machine. At this stage: the FFRecord tooling on a
# generated image-like dataset (pack v1 and v2, inspect, verify, read back,
# unpack, and catch a corrupted byte). Later issues grow this into a training
# run that reads through a local fff cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
FFF=${FFF:-$PWD/bin/fff}
work=$(mktemp -d "${TMPDIR:-/tmp}/fff-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "generating a dataset: 2,000 files in 10 class directories under $work/src"
python3 - "$work/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for i in range(2000):
    d = os.path.join(root, f"class{i % 10:02d}")
    os.makedirs(d, exist_ok=True)
    n = rng.choice([rng.randint(0, 4096), rng.randint(4096, 64 << 10), rng.randint(64 << 10, 200 << 10)])
    with open(os.path.join(d, f"img_{i:05d}.bin"), "wb") as f:
        f.write(rng.randbytes(n))
PY
du -sh "$work/src" | cut -f1 | sed 's/^/size: /'

step "fff ffr pack (v2, the default) into shards of 64 MiB"
"$FFF" ffr pack "$work/src" -o "$work/ds-v2/" --shard-size 64MiB
step "fff ffr pack --format v1 (HFAiLab-compatible)"
"$FFF" ffr pack "$work/src" -o "$work/ds-v1.ffr" --format v1

step "fff ffr inspect"
"$FFF" ffr inspect "$work/ds-v2"
step "fff ffr verify (every checksum)"
"$FFF" ffr verify "$work/ds-v2" "$work/ds-v1.ffr"

step "fff ffr cat: sample 1234 equals its source file"
key=$("$FFF" ffr cat --key "$work/ds-v2" 1234)
"$FFF" ffr cat "$work/ds-v2" 1234 | cmp - "$work/src/$key" && echo "sample 1234 = $key: identical"

step "fff ffr unpack restores the tree byte for byte"
"$FFF" ffr unpack "$work/ds-v2" -o "$work/out"
diff -r "$work/src" "$work/out" && echo "unpacked tree identical to the source"

step "a flipped byte inside a sample is caught and named"
cp "$work/ds-v1.ffr" "$work/bad.ffr"
python3 - "$work/bad.ffr" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(-1000, 2); b = f.read(1); f.seek(-1000, 2); f.write(bytes([b[0] ^ 0xFF]))
PY
if "$FFF" ffr verify "$work/bad.ffr"; then echo "verify missed the damage" >&2; exit 1; fi
echo "verify exited non-zero, as it must"
step "a local cluster: fff up, the namespace, fff status, fff down"
export XDG_CONFIG_HOME="$work/config"   # keep the demo's cluster record out of ~/.config
"$FFF" up --daemon --data "$work/cluster"
trap '"$FFF" down --data "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$FFF" mkdir -p /datasets/demo/train /datasets/demo/val
"$FFF" touch /datasets/demo/train/README
"$FFF" ln -s /datasets/demo/train /datasets/latest
"$FFF" mv /datasets/demo/val /datasets/demo/validation
"$FFF" ls -l /datasets /datasets/demo
"$FFF" stat /datasets/demo/train/README
"$FFF" status
"$FFF" down --data "$work/cluster"

step "demo complete"
