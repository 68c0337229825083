"""`python -m kernel_sim lab` starts a JupyterLab that serves the course.

The smoke test starts the real server the way ``make lab`` does (from the
repository root, with the venv's interpreter), waits for it to answer, and
stops it by PID. Jupyter's settings, runtime files and HOME live in a temporary
folder so the test never touches the user's own configuration.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from processes import stop_process

from kernel_sim.tools import lab

REPO_ROOT = Path(__file__).resolve().parent.parent
START = "notebooks/00_start_here.ipynb"
STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("HOME", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        d = tmp / name.lower()
        d.mkdir()
        env[name] = str(d)
    env.pop("JUPYTER_PATH", None)
    return env


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def lab_server(tmp_path):
    """A running `python -m kernel_sim lab --no-browser` server; yields (base_url, token)."""
    port, token = _free_port(), secrets.token_hex(16)
    log_path = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "kernel_sim", "lab", "--no-browser",
           "--ip", "127.0.0.1", "--port", str(port), "--token", token]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_isolated_env(tmp_path),
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, token, proc, log_path
    finally:
        stop_process(proc)


def _wait_until_served(base, token, proc, log_path) -> bytes:
    url = f"{base}/api/contents/{START}?token={token}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`kernel_sim lab` exited with status {proc.returncode}:\n"
                        f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            status, body = _get(url)
            if status == 200:
                return body
            last = f"HTTP {status}"
        except OSError as exc:  # connection refused while the server starts
            last = repr(exc)
        time.sleep(0.5)
    pytest.fail(f"server did not serve {START} within {STARTUP_TIMEOUT:.0f} s ({last}):\n"
                f"{log_path.read_text(errors='replace')[-3000:]}")


def test_lab_serves_start_here_notebook_and_lab_page(lab_server):
    base, token, proc, log_path = lab_server
    body = _wait_until_served(base, token, proc, log_path)
    model = json.loads(body)
    assert model["type"] == "notebook"
    assert model["path"] == START

    status, page = _get(f"{base}/lab/tree/{START}?token={token}")
    assert status == 200
    assert b"jupyter-config-data" in page  # the JupyterLab application page, not an error page

    # the printed URL is the one a learner can click (same port, token, notebook)
    out = log_path.read_text(errors="replace")
    assert f"{base}/lab/tree/{START}?token={token}" in out


def test_lab_server_pid_is_the_jupyter_server_so_it_stops_on_sigterm(lab_server):
    base, token, proc, log_path = lab_server
    _wait_until_served(base, token, proc, log_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) is not None
    with pytest.raises(OSError):
        _get(f"{base}/api/status?token={token}", timeout=2)


def test_lab_refuses_with_clear_message_when_jupyterlab_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jupyterlab", None)  # makes find_spec() answer None
    assert lab.main_lab(["--no-browser"]) == 1
    err = capsys.readouterr().err
    assert "JupyterLab is not installed" in err
    assert "pip install -e ." in err


def test_lab_command_passes_port_ip_no_browser_and_unknown_options_through():
    cmd = lab.build_lab_command(
        ["--no-browser", "--port", "9123", "--ip", "0.0.0.0", "--token", "t0k",
         "--ServerApp.base_url=/course/"],
        root=REPO_ROOT,
    )
    argv = cmd.argv
    assert argv[:3] == [sys.executable, "-m", "jupyterlab"]
    assert "--no-browser" in argv
    assert "--ServerApp.port=9123" in argv
    assert "--ServerApp.ip=0.0.0.0" in argv
    assert "--IdentityProvider.token=t0k" in argv
    assert "--ServerApp.base_url=/course/" in argv
    assert f"--ServerApp.root_dir={REPO_ROOT}" in argv
    assert f"--LabApp.default_url=/lab/tree/{START}" in argv
    assert cmd.url == f"http://localhost:9123/lab/tree/{START}?token=t0k"


def test_lab_command_keeps_a_token_given_as_jupyter_option():
    cmd = lab.build_lab_command(["--IdentityProvider.token=mine", "--port", "9124"], root=REPO_ROOT)
    assert [a for a in cmd.argv if "token" in a] == ["--IdentityProvider.token=mine"]
    assert "--no-browser" not in cmd.argv


def test_lab_command_explains_where_to_run_when_notebooks_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="root of the kernel_sim repository"):
        lab.build_lab_command(["--notebook", "notebooks/does_not_exist.ipynb"])


def test_python3_kernel_runs_in_this_interpreter():
    """nbmake and the lab start the `python3` kernelspec: it must be this venv's Python,
    otherwise notebooks would import some other installation of kernel_sim (or none)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    outputs: list[dict] = []
    try:
        reply = kc.execute_interactive(
            "import sys, kernel_sim; print(sys.prefix); print(kernel_sim.__file__)",
            timeout=60, output_hook=outputs.append,
        )
        assert reply["content"]["status"] == "ok"
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        prefix, pkg = text.strip().splitlines()[-2:]
        assert Path(prefix).resolve() == Path(sys.prefix).resolve()
        import kernel_sim

        assert Path(pkg).resolve() == Path(kernel_sim.__file__).resolve()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- the test-suite gate for browser tests (tests/conftest.py) ---------------------------

_GATED_TEST = '''
import pytest

@pytest.mark.browser
def test_needs_a_browser():
    pytest.skip("no chromium here")

def test_plain_skip_stays_a_skip():
    pytest.skip("unrelated")
'''


def _run_gated(tmp_path, require: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_gate.py").write_text(_GATED_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    browser: test\n")
    env = dict(os.environ, KERNEL_SIM_REQUIRE_BROWSER=require)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def test_skipped_browser_test_fails_when_browser_is_required(tmp_path):
    res = _run_gated(tmp_path, "1")
    assert res.returncode == 1, res.stdout
    assert "1 failed, 1 skipped" in res.stdout
    assert "KERNEL_SIM_REQUIRE_BROWSER=1 requires it to run" in res.stdout
    assert "no chromium here" in res.stdout


def test_skipped_browser_test_stays_skipped_when_browser_is_optional(tmp_path):
    res = _run_gated(tmp_path, "")
    assert res.returncode == 0, res.stdout
    assert "2 skipped" in res.stdout
