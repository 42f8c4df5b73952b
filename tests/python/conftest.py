"""Fixtures of the Python tests: a freshly built libfff.so and a real
single-node cluster (fffd local), no mocks.

Once per session: builds libfff.so (go build -buildmode=c-shared, or takes
FFF_LIBRARY), fff and fffd (go build into a temp dir), starts `fffd local` on a
temp data directory and exports FFF_CLUSTER / FFF_TOKEN (and FFF_LIBRARY) so
the tests and the processes they spawn use it. The cluster is stopped (its
whole process group killed) when the session ends, whatever happened.

The tests import the package from pybind/ in this tree, not an installed copy.
Every test has a hard time limit (pytest-timeout's thread method when that
plugin is installed, else faulthandler), so a hang fails instead of blocking.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, Iterator, Optional

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYBIND = os.path.join(ROOT, "pybind")
if PYBIND not in sys.path:
    sys.path.insert(0, PYBIND)
# Processes the tests spawn (multiprocessing 'spawn', subprocess) import it too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PYBIND, os.environ.get("PYTHONPATH", "")) if p)

TEST_TIMEOUT = float(os.environ.get("FFF_TEST_TIMEOUT", "120"))  # seconds per test
BUILD_TIMEOUT = 900


def _goflags() -> str:
    f = os.environ.get("GOFLAGS", "")
    for need in ("-buildvcs=false", "-ldflags=-checklinkname=0"):
        if need not in f.split():
            f = (f + " " + need).strip()
    return f


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.path.exists(go):
        pytest.exit("the Python tests build libfff.so with Go: install Go >= 1.26 (scripts/bootstrap.sh go)", 2)
    return go


def _run_build(args: list, what: str) -> None:
    env = dict(os.environ, GOFLAGS=_goflags(), CGO_ENABLED="1")
    r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if r.returncode != 0:
        pytest.exit(f"building {what} failed:\n{r.stdout}{r.stderr}", 2)


@dataclass
class Cluster:
    address: str
    token: str
    data: str
    pid: int
    bin_dir: str
    env: Dict[str, str]  # environment for CLI runs against this cluster

    def cli(self, *args: str, token: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        """Runs bin/fff against the cluster."""
        env = dict(self.env)
        if token is not None:
            env["FFF_TOKEN"] = token
        r = subprocess.run(
            [os.path.join(self.bin_dir, "fff"), *args], env=env, capture_output=True, text=True, timeout=60
        )
        if check and r.returncode != 0:
            raise AssertionError(f"fff {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r


_state: Dict[str, str] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    # Builds happen here, outside any test's time limit: a cold Go build cache
    # takes minutes on a small machine.
    if session.config.option.collectonly:
        return
    tmp = tempfile.mkdtemp(prefix="fff-pytest-")
    _state["tmp"] = tmp
    go = _go()
    lib = os.environ.get("FFF_LIBRARY")
    if not lib:
        lib = os.path.join(tmp, "lib", "libfff.so")
        _run_build([go, "build", "-buildmode=c-shared", "-o", lib, "./libfff/capi"], "libfff.so")
        os.environ["FFF_LIBRARY"] = lib
    _state["lib"] = os.path.abspath(lib)
    bin_dir = os.path.join(tmp, "bin")
    _run_build([go, "build", "-o", bin_dir + "/", "./cmd/fff", "./cmd/fffd"], "fff and fffd")
    _state["bin"] = bin_dir


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_cluster()
    tmp = _state.get("tmp")
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


_cluster_proc: Optional[subprocess.Popen] = None


def _stop_cluster() -> None:
    global _cluster_proc
    p, _cluster_proc = _cluster_proc, None
    if p is None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=20)
    except ProcessLookupError:
        pass


def _start_cluster() -> Cluster:
    global _cluster_proc
    tmp = _state["tmp"]
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    # Never touch the user's cluster file or data.
    for k, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "share")):
        os.environ[k] = os.path.join(tmp, sub)
    for k in ("FFF_CLUSTER", "FFF_TOKEN"):
        os.environ.pop(k, None)
    log = open(os.path.join(data, "fffd.log"), "ab")
    p = subprocess.Popen(
        [os.path.join(_state["bin"], "fffd"), "local", "--data", data, "--listen", "127.0.0.1:0"],
        stdout=log,
        stderr=log,
        start_new_session=True,  # its own process group: killed as a whole
    )
    log.close()
    _cluster_proc = p
    deadline = time.monotonic() + 60
    addr = None
    while addr is None:
        try:
            with open(os.path.join(data, "fffd.json")) as f:
                ri = json.load(f)
            if ri.get("pid") == p.pid:
                addr = ri["address"]
                break
        except (OSError, ValueError):
            pass
        if p.poll() is not None or time.monotonic() > deadline:
            _stop_cluster()
            with open(os.path.join(data, "fffd.log"), errors="replace") as f:
                tail = f.read()[-4000:]
            pytest.exit(f"fffd local did not come up (exit {p.returncode}):\n{tail}", 2)
        time.sleep(0.02)
    with open(os.path.join(data, "admin.token")) as f:
        token = f.read().strip()
    os.environ["FFF_CLUSTER"] = addr
    os.environ["FFF_TOKEN"] = token
    return Cluster(addr, token, data, p.pid, _state["bin"], dict(os.environ))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A single-node cluster for the whole session (FFF_CLUSTER/FFF_TOKEN set)."""
    if "bin" not in _state:
        pytest.skip("session start did not build the binaries")
    c = _start_cluster()
    try:
        yield c
    finally:
        _stop_cluster()


@pytest.fixture(scope="session")
def libfff_path() -> str:
    """The libfff.so under test (FFF_LIBRARY)."""
    return _state["lib"]


_counter = [0]


@pytest.fixture
def fff_dir(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh directory in the cluster for one test: "/t/<test>-<n>"."""
    import fff

    _counter[0] += 1
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)[:80]
    d = f"/t/{name}-{_counter[0]}"
    fff.makedirs(d, exist_ok=True)
    return d


# --- time limits ------------------------------------------------------------

try:
    import pytest_timeout  # noqa: F401

    _HAVE_TIMEOUT_PLUGIN = True
except ImportError:
    _HAVE_TIMEOUT_PLUGIN = False


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not _HAVE_TIMEOUT_PLUGIN:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            # The thread method also ends a test stuck inside a C call.
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT, method="thread"))


@pytest.fixture(autouse=True)
def _hard_timeout() -> Iterator[None]:
    """Without pytest-timeout: dump every thread's stack and exit on a hang."""
    if _HAVE_TIMEOUT_PLUGIN:
        yield
        return
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
