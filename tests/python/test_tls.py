"""fff.connect() and a TLS cluster (`fff up --tls`; docs/security.md).

The Python package reaches the cluster through the Go library, which
resolves the cluster's CA as it does the token: the cluster file's "ca"
(written by `fff up --tls`), or FFF_CA for FFF_CLUSTER users. The library
reads the environment when it is loaded, so each case runs in a process of
its own.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, Tuple

import pytest

SCRIPT = """
import fff
c = fff.connect()
with c.open("/tls-check", "wb") as f:
    f.write(b"over tls")
with c.open("/tls-check", "rb") as f:
    assert f.read() == b"over tls"
print("ok")
"""

REFUSED = """
import fff
try:
    fff.connect()
except fff.Error as e:
    print(type(e).__name__, e)
else:
    print("connected")
"""


def run_fff(bin_dir: str, env: Dict[str, str], *args: str) -> str:
    r = subprocess.run([os.path.join(bin_dir, "fff"), *args], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"fff {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def python(env: Dict[str, str], script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def tls_cluster(cluster) -> Iterator[Tuple[str, str, str, Dict[str, str]]]:
    """A cluster of this test's own, started with `fff up --tls --daemon`;
    the environment names no cluster (the cluster file in XDG_CONFIG_HOME
    does)."""
    tmp = tempfile.mkdtemp(prefix="fff-tls-")
    data = os.path.join(tmp, "data")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"), FFF_TCP_ONLY="1")
    for k in ("FFF_CLUSTER", "FFF_TOKEN", "FFF_CA"):
        env.pop(k, None)
    try:
        run_fff(cluster.bin_dir, env, "up", "--tls", "--daemon", "--data", data)
        with open(os.path.join(data, "fffd.json")) as f:
            addr = json.load(f)["address"]
        with open(os.path.join(data, "admin.token")) as f:
            token = f.read().strip()
        yield addr, token, data, env
    finally:
        subprocess.run([os.path.join(cluster.bin_dir, "fff"), "down", "--data", data], env=env, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def test_connect_tls_cluster(tls_cluster) -> None:
    addr, token, data, env = tls_cluster
    # The default cluster: the cluster file records its CA.
    r = python(env, SCRIPT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # FFF_CLUSTER users name the CA with FFF_CA.
    named = dict(env, XDG_CONFIG_HOME=os.path.join(data, "no-config"), FFF_CLUSTER=addr, FFF_TOKEN=token)
    r = python(dict(named, FFF_CA=os.path.join(data, "tls", "ca.pem")), SCRIPT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # Set in os.environ before connecting, as FFF_CLUSTER and FFF_TOKEN may be.
    late = "import os\nos.environ['FFF_CA'] = %r\n" % os.path.join(data, "tls", "ca.pem")
    r = python(named, late + SCRIPT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # Without it the cluster refuses the client, and says why.
    r = python(named, REFUSED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ClusterUnavailableError") and "TLS" in r.stdout, r.stdout
