"""Binder: the launch link, the ``binder/`` files, and a rehearsal of a Binder build.

mybinder.org builds an image with repo2docker.  For this repository it (1) installs
``binder/requirements.txt`` with pip, from the repository root -- the ``.`` line installs the
package, because a ``binder/`` folder makes repo2docker ignore the root's ``pyproject.toml``;
(2) runs ``binder/postBuild`` once, at build time; (3) runs every session through
``binder/start``, which must end by handing over to the Jupyter server with ``exec "$@"``.

The fast tests check the files and the launch link.  The slow test repeats steps 1-3 locally in a
fresh virtual environment, then checks that notebook 00 runs without errors *and* loads the
kernels from the cache compiled at build time instead of compiling them again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"
BINDER_HOST = "mybinder.org"
START_NOTEBOOK = "notebooks/00_start_here.ipynb"


# ---------------------------------------------------------------------------------------------
# Reading the files
# ---------------------------------------------------------------------------------------------
def pyproject() -> dict:
    try:
        import tomllib
    except ImportError:                       # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def readme_binder_urls() -> list:
    """Targets of the README's links that launch Binder."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"\]\((https://" + re.escape(BINDER_HOST) + r"/v2/[^)\s]+)\)", text)


def commands(path: Path) -> list:
    """The shell script's lines without blank lines and comments (the shebang is a comment)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def exports(path: Path) -> dict:
    """``{NAME: value}`` for every ``export NAME=value`` line, quotes removed."""
    out = {}
    for line in commands(path):
        m = re.fullmatch(r"export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2).strip().strip("\"'")
    return out


def parse_binder_url(url: str):
    """Split a launch URL into (owner/repo, ref, path the lab opens)."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == BINDER_HOST, url
    m = re.fullmatch(r"/v2/gh/([^/]+/[^/]+)/([^/]+)", parts.path)
    assert m, f"{url}: expected https://{BINDER_HOST}/v2/gh/OWNER/REPO/REF?urlpath=..."
    urlpath = parse_qs(parts.query).get("urlpath", [""])[0]
    assert urlpath.startswith("lab/tree/"), f"{url}: urlpath should open JupyterLab (lab/tree/...)"
    return m.group(1), m.group(2), urlpath[len("lab/tree/"):]


# ---------------------------------------------------------------------------------------------
# Fast checks
# ---------------------------------------------------------------------------------------------
def test_readme_badge_and_pyproject_launch_the_same_notebook():
    project_urls = pyproject()["project"]["urls"]
    assert "Binder" in project_urls, "pyproject.toml [project.urls] needs a Binder entry"
    badges = readme_binder_urls()
    assert badges, "README.md has no Binder launch link"
    assert set(badges) == {project_urls["Binder"]}, (badges, project_urls["Binder"])
    repo, ref, notebook = parse_binder_url(project_urls["Binder"])
    assert notebook == START_NOTEBOOK
    assert (REPO / notebook).is_file(), f"the Binder link opens {notebook}, which does not exist"
    assert ref == "HEAD"
    homepage = project_urls.get("Homepage", "")
    if homepage.startswith("https://github.com/"):
        assert homepage.rstrip("/").lower().endswith("/" + repo.lower()), (homepage, repo)


def test_the_badge_shows_the_binder_logo():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"\[!\[[^\]]*\]\(https://" + re.escape(BINDER_HOST)
                     + r"/badge_logo\.svg\)\]\(https://" + re.escape(BINDER_HOST), text)


def test_requirements_install_the_repository_root():
    lines = [line.split("#")[0].strip()
             for line in (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    assert "." in lines, "binder/requirements.txt must contain '.' (the root pyproject is ignored)"


def test_runtime_python_satisfies_requires_python():
    m = re.fullmatch(r"python-(\d+)\.(\d+)", (BINDER / "runtime.txt").read_text().strip())
    assert m, "binder/runtime.txt must look like python-3.11"
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert floor, "requires-python is expected as >=X.Y"
    assert tuple(map(int, m.groups())) >= tuple(map(int, floor.groups()))


def test_postbuild_stops_at_the_first_error():
    first = commands(BINDER / "postBuild")[0]
    assert re.fullmatch(r"set\s+-[a-zA-Z]*e[a-zA-Z]*(\s+.*)?", first), (
        f"binder/postBuild must start with `set -e` (repo2docker ignores failures otherwise); "
        f"its first command is {first!r}")


def test_start_hands_over_to_the_server():
    last = commands(BINDER / "start")[-1]
    assert last == 'exec "$@"', f'binder/start must end with exec "$@", not {last!r}'


def test_postbuild_and_start_use_the_same_numba_settings():
    build = {k: v for k, v in exports(BINDER / "postBuild").items() if k.startswith("NUMBA_")}
    start = {k: v for k, v in exports(BINDER / "start").items() if k.startswith("NUMBA_")}
    assert "NUMBA_CACHE_DIR" in build, "postBuild must choose where the warm cache goes"
    assert build["NUMBA_CACHE_DIR"].startswith("$HOME/")
    assert build == start, "a cache compiled with other settings is not reused"


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_scripts_are_bash_scripts(name):
    first_line = (BINDER / name).read_text(encoding="utf-8").splitlines()[0]
    assert first_line in ("#!/bin/bash", "#!/usr/bin/env bash"), first_line


# ---------------------------------------------------------------------------------------------
# The rehearsal
# ---------------------------------------------------------------------------------------------
#: Copying the repository: what never goes into a Binder build (used when git is unavailable).
IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist",
                                 ".pytest_cache", ".hypothesis", ".ruff_cache", "*.nbi", "*.nbc",
                                 ".ipynb_checkpoints", "test-artifacts")

#: Appended to the notebook: reports, from inside the kernel, where the kernels came from.
PROBE_CELL = """\
import json, sys, numba, kernel_sim
from numba.core.dispatcher import Dispatcher
modules = [m for n, m in list(sys.modules.items()) if n.startswith("kernel_sim.") and m]
jitted = {m.__name__ + "." + n: f.stats for m in modules
          for n, f in vars(m).items() if isinstance(f, Dispatcher)}
print("PROBE " + json.dumps({
    "cache_dir": numba.config.CACHE_DIR, "package": kernel_sim.__file__,
    "hits": sum(sum(s.cache_hits.values()) for s in jitted.values()),
    "compiled": sorted(n for n, s in jitted.items() if sum(s.cache_misses.values()))}))
"""

#: Run by the new environment's Python through binder/start: execute a notebook like JupyterLab
#: does (a python3 kernel whose working directory is the notebook's folder).
EXECUTE_SCRIPT = """\
import os, sys
import nbformat
from nbclient import NotebookClient
source, target, probe = sys.argv[1:4]
nb = nbformat.read(source, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(probe))
client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                        resources={"metadata": {"path": os.path.dirname(os.path.abspath(source))}})
client.execute()
nbformat.write(nb, target)
"""


def run_step(what: str, cmd: list, *, cwd: Path, env: dict, timeout: float) -> str:
    """Run ``cmd``; return its output, or fail the test showing the tail of that output.

    The child gets its own process group, so on a timeout its children (pip's build backend, a
    Jupyter kernel) are stopped too.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{what}: no result after {timeout:.0f} s; last output:\n{tail(out)}")
    if proc.returncode != 0:
        pytest.fail(f"{what}: exit status {proc.returncode}; last output:\n{tail(out)}")
    return out


def tail(text, lines: int = 60) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def copy_repository(target: Path) -> None:
    """Copy what a clone would contain: tracked files plus new files git does not ignore."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=REPO, capture_output=True,
                                timeout=60, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(REPO, target, ignore=IGNORED)
        return
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():                  # skip files deleted but not yet committed
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def cache_snapshot(cache: Path) -> dict:
    """``{relative path: SHA-256}`` of the Numba cache's index (.nbi) and data (.nbc) files."""
    return {str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache.rglob("*")) if p.suffix in (".nbi", ".nbc")}


def build_env(venv: Path, **extra) -> dict:
    """The environment of the build: the new venv first on PATH, no settings from this one."""
    dropped = ("NUMBA_", "JUPYTER", "IPYTHON", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               VIRTUAL_ENV=str(venv), PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None,
                    reason="Binder images are Linux; the scripts need bash")
def test_binder_build_then_notebook_00_uses_the_warm_cache(tmp_path):
    """Install, postBuild, start, run notebook 00: no errors and nothing compiled again."""
    times = {}
    repo, venv, home = tmp_path / "repo", tmp_path / "venv", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    copy_repository(repo)

    t0 = time.perf_counter()
    run_step("python -m venv", [sys.executable, "-m", "venv", str(venv)], cwd=tmp_path,
             env=build_env(venv), timeout=180)
    python = str(venv / "bin" / "python")
    # pip keeps the real HOME so that its download cache makes reruns fast
    run_step("pip install -r binder/requirements.txt",
             [python, "-m", "pip", "install", "-r", "binder/requirements.txt"],
             cwd=repo, env=build_env(venv), timeout=1200)
    times["install"] = time.perf_counter() - t0

    session = build_env(venv, HOME=str(home))
    t0 = time.perf_counter()
    run_step("binder/postBuild", ["bash", "binder/postBuild"], cwd=repo, env=session,
             timeout=600)
    times["postBuild"] = time.perf_counter() - t0
    cache = home / ".numba_cache"
    before = cache_snapshot(cache) if cache.is_dir() else {}
    assert any(n.endswith(".nbi") for n in before) and any(n.endswith(".nbc") for n in before), (
        f"postBuild left no Numba cache in {cache}")

    t0 = time.perf_counter()
    (tmp_path / "execute.py").write_text(EXECUTE_SCRIPT)
    executed = tmp_path / "executed.ipynb"
    run_step("notebook 00 through binder/start",
             ["bash", "binder/start", python, str(tmp_path / "execute.py"), START_NOTEBOOK,
              str(executed), PROBE_CELL], cwd=repo, env=session, timeout=600)
    times["notebook"] = time.perf_counter() - t0
    print("binder rehearsal, seconds:", {k: round(v, 1) for k, v in times.items()})

    cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    outputs = [(i, o) for i, c in enumerate(cells) if c["cell_type"] == "code"
               for o in c.get("outputs", [])]
    errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, o in outputs
              if o["output_type"] == "error"]
    assert not errors, "notebook 00 raised errors on Binder:\n" + "\n".join(errors)
    text = "".join("".join(o.get("text", "")) for _, o in outputs if o["output_type"] == "stream")
    assert "ready in" in text, "the first cell (course.setup()) did not report the warm-up"
    probe = json.loads(re.search(r"^PROBE (.*)$", text, re.M).group(1))

    assert Path(probe["cache_dir"]).resolve() == cache.resolve(), (
        "the kernel did not get binder/start's NUMBA_CACHE_DIR")
    assert Path(probe["package"]).resolve().is_relative_to(venv.resolve()), (
        f"the notebook imported kernel_sim from {probe['package']}, not the installed package")
    assert probe["compiled"] == [] and probe["hits"] >= 1, probe
    assert cache_snapshot(cache) == before, "running notebook 00 changed the Numba cache"
    shutil.rmtree(venv, ignore_errors=True)   # about 400 MB; kept only when the test fails
