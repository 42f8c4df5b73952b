"""The README's snippets run as pasted, against a fresh, empty cluster.

The shell blocks (all but the first, which is `make demo` / `make test`
themselves) run in order in one bash with `set -e`, in an empty working
directory whose `bin/` holds the binaries under test; a line that is a
`make` command is the build, which the session already did, and is skipped.
`fff up --daemon` in them starts a cluster of this test's own (XDG
directories are temporary). Then each Python block runs as a script of its
own (`python3 snippet.py`), as a user who pasted it into a file would.
"""

import os
import re
import subprocess
import sys
import tempfile
from typing import List, Tuple

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")


def blocks(path: str) -> List[Tuple[str, str]]:
    """(language, code) of every fenced block of a Markdown file."""
    with open(path) as f:
        text = f.read()
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)]


def test_readme_has_snippets() -> None:
    langs = [lang for lang, _ in blocks(README)]
    assert langs.count("sh") >= 3 and langs.count("python") >= 1, langs


def test_readme_snippets_run_as_pasted(cluster) -> None:
    sh = [code for lang, code in blocks(README) if lang == "sh"]
    py = [code for lang, code in blocks(README) if lang == "python"]
    assert sh[0].lstrip().startswith("make demo"), "the README starts with the two commands"
    tmp = tempfile.mkdtemp(prefix="fff-readme-")
    work = os.path.join(tmp, "work")
    os.makedirs(work)
    os.symlink(cluster.bin_dir, os.path.join(work, "bin"))
    env = dict(os.environ)
    for k in ("FFF_CLUSTER", "FFF_TOKEN"):
        env.pop(k, None)
    env.update(
        XDG_CONFIG_HOME=os.path.join(tmp, "config"),
        XDG_DATA_HOME=os.path.join(tmp, "share"),
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    script = ["set -euo pipefail"]
    for code in sh[1:]:
        script += [line for line in code.splitlines() if not re.match(r"\s*make\b", line)]
    try:
        r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"README shell snippets failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        for i, code in enumerate(py):
            path = os.path.join(work, f"snippet{i}.py")
            with open(path, "w") as f:
                f.write(code)
            r = subprocess.run([sys.executable, path], cwd=work, env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"README Python snippet {i} failed:\n{code}\n{r.stderr[-3000:]}"
    finally:
        subprocess.run(["bash", "-c", "bin/fff down"], cwd=work, env=env, capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", tmp])


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
