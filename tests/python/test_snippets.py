"""The snippets of README.md and docs/ run as written, against a fresh, empty
cluster.

README.md: its shell blocks (all but the first, which is `make demo` /
`make test` themselves) run in order in one bash with `set -e`, in an empty
working directory whose `bin/` holds the binaries under test; a line that is
a `make` command is the build, which the session already did, and is
skipped. `fff up --daemon` in them starts a cluster of this test's own (XDG
directories are temporary). Then each Python block runs as a script of its
own (`python3 snippet.py`), as a user who pasted it into a file would.

docs/*.md: every `sh` and `python` block runs the same way, each file in a
directory and cluster of its own (started before each block, as the docs
assume one is up), unless the line before it says why not
(`<!-- not run: REASON -->`: an API tour whose names stand for the reader's,
FoundationDB, benchmarks). `/mnt/fff` becomes a temporary directory, and a
block that mounts is skipped where FUSE cannot be mounted (not root).
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^(?:<!-- not run: (?P<why>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.M | re.S)


def blocks(path: str) -> List[Tuple[str, str, str]]:
    """(language, code, why it is not run or "") of every fenced block."""
    with open(path) as f:
        text = f.read()
    return [(m.group("lang"), m.group("code"), m.group("why") or "") for m in FENCE.finditer(text)]


class Sandbox:
    """An empty working directory with bin/ and a cluster record of its own."""

    def __init__(self, bin_dir: str) -> None:
        self.tmp = tempfile.mkdtemp(prefix="fff-snippets-")
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.work)
        os.symlink(bin_dir, os.path.join(self.work, "bin"))
        env = dict(os.environ)
        for k in ("FFF_CLUSTER", "FFF_TOKEN"):
            env.pop(k, None)
        env.update(
            XDG_CONFIG_HOME=os.path.join(self.tmp, "config"),
            XDG_DATA_HOME=os.path.join(self.tmp, "share"),
            PATH=os.pathsep.join([os.path.join(self.work, "bin"), os.path.dirname(sys.executable), env.get("PATH", "")]),
        )
        self.env: Dict[str, str] = env

    def sh(self, script: str, what: str) -> None:
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{what} failed (exit {r.returncode}):\n{script}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"

    def python(self, code: str, what: str) -> None:
        path = os.path.join(self.work, "snippet.py")
        with open(path, "w") as f:
            f.write(code)
        r = subprocess.run([sys.executable, path], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{what} failed:\n{code}\n{r.stderr[-3000:]}"

    def close(self) -> None:
        for mnt in glob.glob(os.path.join(self.tmp, "mnt*")):
            subprocess.run(["bin/fff", "umount", mnt], cwd=self.work, env=self.env, capture_output=True, timeout=60)
        subprocess.run(["bin/fff", "down"], cwd=self.work, env=self.env, capture_output=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


def test_readme_has_snippets() -> None:
    langs = [lang for lang, _, _ in blocks(README)]
    assert langs.count("sh") >= 3 and langs.count("python") >= 1, langs


def test_readme_snippets_run_as_pasted(cluster) -> None:
    sh = [code for lang, code, _ in blocks(README) if lang == "sh"]
    py = [code for lang, code, _ in blocks(README) if lang == "python"]
    assert sh[0].lstrip().startswith("make demo"), "the README starts with the two commands"
    box = Sandbox(cluster.bin_dir)
    try:
        script = [line for code in sh[1:] for line in code.splitlines() if not re.match(r"\s*make\b", line)]
        box.sh("\n".join(script), "README shell snippets")
        for i, code in enumerate(py):
            box.python(code, f"README Python snippet {i}")
    finally:
        box.close()


def can_mount() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


def runnable(doc: str) -> List[Tuple[str, str]]:
    return [(lang, code) for lang, code, why in blocks(doc) if lang in ("sh", "python") and not why]


def test_docs_have_runnable_snippets() -> None:
    assert len([d for d in DOCS if runnable(d)]) >= 3


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable(d)], ids=os.path.basename)
def test_docs_snippets_run_as_written(cluster, doc: str) -> None:
    box = Sandbox(cluster.bin_dir)
    try:
        for i, (lang, code) in enumerate(runnable(doc)):
            what = f"{os.path.basename(doc)} {lang} snippet {i}"
            if "/mnt/fff" in code:
                if not can_mount():
                    continue
                code = code.replace("/mnt/fff", os.path.join(box.tmp, f"mnt{i}"))
            box.sh("bin/fff up --daemon >/dev/null", "fff up")
            if lang == "sh":
                box.sh("\n".join(line for line in code.splitlines() if not re.match(r"\s*make\b", line)), what)
            else:
                box.python(code, what)
    finally:
        box.close()


UNGUARDED = """
import fff, fff.torch
ds = fff.torch.FFRecordDataset({path!r})
for batch in fff.torch.DataLoader(ds, batch_size=4, num_workers=2):
    pass
"""


def test_unguarded_script_gets_told_what_to_do(cluster, fff_dir: str, tmp_path) -> None:
    import fff

    with fff.ffrecord.Writer(f"fff://{fff_dir}/ds.ffr") as w:
        for i in range(16):
            w.write(bytes([i]) * 100)
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED.format(path=f"fff://{fff_dir}/ds.ffr"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "WorkerStartError" in r.stderr and 'if __name__ == "__main__":' in r.stderr, r.stderr[-2000:]
    assert "exited unexpectedly" not in r.stderr
    # The same script with the guard runs.
    guarded = "def main():\n" + "".join("    " + line + "\n" for line in UNGUARDED.format(path=f"fff://{fff_dir}/ds.ffr").strip().splitlines())
    guarded += '\nif __name__ == "__main__":\n    main()\n'
    script.write_text(guarded)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
