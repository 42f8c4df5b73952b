"""Builds the fff Python package: the pure-Python sources in pybind/fff plus
libfff.so, which this script builds from the Go sources with the Go toolchain
(go build -buildmode=c-shared ./libfff/capi). Metadata lives in pyproject.toml.

    pip install .          # builds libfff.so and installs the package
    pip install -e .       # the same, with libfff.so built into pybind/fff

Environment: GO (the go binary, default: `go` on PATH, then /usr/local/go/bin/go),
GOFLAGS (extended with the flags every fff build needs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))
MIN_GO = (1, 26)
NEEDED_GOFLAGS = ("-buildvcs=false", "-ldflags=-checklinkname=0")


def _find_go() -> str:
    for cand in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go", os.path.expanduser("~/go/bin/go")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    sys.exit(
        "error: building the fff package needs the Go toolchain, and `go` is not on PATH: "
        "install Go >= %d.%d (https://go.dev/dl, or scripts/bootstrap.sh go) and run pip again, "
        "or set GO=/path/to/go" % MIN_GO
    )


def _check_go_version(go: str) -> None:
    out = subprocess.run([go, "version"], capture_output=True, text=True).stdout
    m = re.search(r"go(\d+)\.(\d+)", out)
    if m and (int(m.group(1)), int(m.group(2))) < MIN_GO:
        sys.exit(f"error: {go} is {out.strip()}; building fff needs Go >= {MIN_GO[0]}.{MIN_GO[1]}: install a newer Go")


def _goflags() -> str:
    flags = os.environ.get("GOFLAGS", "")
    for f in NEEDED_GOFLAGS:
        if f not in flags.split():
            flags = (flags + " " + f).strip()
    return flags


def build_library(out: str) -> None:
    """go build -buildmode=c-shared -o out ./libfff/capi, from the repo root."""
    if not os.path.isfile(os.path.join(ROOT, "go.mod")) or not os.path.isdir(os.path.join(ROOT, "libfff", "capi")):
        sys.exit(f"error: the Go sources of fff (go.mod, libfff/capi) are not in {ROOT}: build from the fff repository")
    go = _find_go()
    _check_go_version(go)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    env = dict(os.environ, GOFLAGS=_goflags(), CGO_ENABLED="1")
    env.setdefault("GOTOOLCHAIN", "local")
    cmd = [go, "build", "-buildmode=c-shared", "-o", out, "./libfff/capi"]
    print("building libfff.so:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env)
    if r.returncode != 0:
        sys.exit(
            f"error: `{' '.join(cmd)}` failed (exit {r.returncode}); see the Go errors above. "
            "cgo needs a C compiler: apt-get install gcc (scripts/bootstrap.sh go)"
        )
    # c-shared also writes a C header next to the library; the package needs none.
    hdr = os.path.splitext(out)[0] + ".h"
    if os.path.exists(hdr):
        os.remove(hdr)


class BuildPyWithGo(build_py):
    """build_py that also builds libfff.so into the package."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        if getattr(self, "editable_mode", False):
            out = os.path.join(ROOT, "pybind", "fff", "libfff.so")
        else:
            out = os.path.join(os.path.abspath(self.build_lib), "fff", "libfff.so")
        build_library(out)

    def get_outputs(self, include_bytecode: bool = True) -> list:
        outs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outs.append(os.path.join(self.build_lib, "fff", "libfff.so"))
        return outs


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform, not py3-none-any."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPyWithGo}, distclass=BinaryDistribution)
