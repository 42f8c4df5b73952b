#!/bin/bash
# Replication 3 against 1 on this machine (docs/performance.md, "Replication"):
# fff put and, with a cold page cache, fff get of a 512 MiB file, three times
# each, on fresh clusters of a control node and two storage nodes. Root (it
# drops the page cache). Until make bench has a replication suite.
set -e
B="$(cd "$(dirname "$0")/.." && pwd)/bin"   # make build first
export XDG_CONFIG_HOME=$(mktemp -d)
head -c $((512<<20)) /dev/urandom > /var/tmp/rb.src
for r in 1 3; do
  D=$(mktemp -d /var/tmp/rbXXXX)
  if [ $r = 1 ]; then $B/fff up --daemon --data $D --storage-nodes 2 >/dev/null; else $B/fff up --daemon --data $D --storage-nodes 2 --replicas 3 >/dev/null; fi
  for i in 1 2 3; do
    s=$(date +%s.%N); $B/fff put /var/tmp/rb.src /f$i >/dev/null 2>&1; e=$(date +%s.%N)
    w=$(echo "512/($e-$s)" | bc -l)
    sync; echo 3 > /proc/sys/vm/drop_caches
    s=$(date +%s.%N); $B/fff get /f$i /var/tmp/rb.dst >/dev/null 2>&1; e=$(date +%s.%N)
    rd=$(echo "512/($e-$s)" | bc -l)
    printf "replicas %d run %d: put %.0f MiB/s  get %.0f MiB/s\n" $r $i $w $rd
    $B/fff rm /f$i >/dev/null 2>&1 || true
  done
  $B/fff down --data $D >/dev/null
  rm -rf $D
done
rm -f /var/tmp/rb.src /var/tmp/rb.dst
