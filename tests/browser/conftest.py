"""Real-browser test harness: JupyterLab + headless chromium + Playwright.

What the fixtures give you
--------------------------
``lab_server`` (session)
    One JupyterLab server on 127.0.0.1 (free port, random token) serving a
    *temporary copy* of ``notebooks/``, started with the venv's interpreter.
    HOME and the JUPYTER_* folders point into a temp folder, and the user
    settings there switch off notebook windowing (so every cell is in the DOM)
    and the news / update toasts. ``--LabApp.expose_app_in_browser`` makes the
    application available as ``window.jupyterapp`` for the helpers below.
    Attributes: ``url``, ``token``, ``root`` (the served folder: write extra
    notebooks there and open them by name), ``log`` (server log file).

``browser`` (session)
    One headless Debian chromium (``/usr/bin/chromium`` or
    ``$KERNEL_SIM_CHROMIUM``) driven by Playwright. Skipped with a reason when
    chromium or playwright is missing -- a failure instead when
    ``KERNEL_SIM_REQUIRE_BROWSER=1`` (see ``tests/conftest.py``).

``page`` (per test)
    A fresh browser context and page whose ``base_url`` is the server. When the
    test fails, a full-page screenshot and the browser console log are saved to
    ``test-artifacts/<test name>.png`` / ``.console.txt`` (repository root), and
    all kernels are shut down after every test.

``jlab`` (per test)
    The helper functions below bundled with the server, so a test needs no
    imports::

        def test_dropdown_changes_the_exit_chart(page, jlab):
            jlab.open_and_run_all(page, "02_protection_rings.ipynb")
            jlab.assert_no_error_outputs(page)
            before = jlab.plotly_values(page)             # first plot, trace 0, "y"
            jlab.select_dropdown(page, "syscall loop")     # first dropdown on the page
            after = jlab.wait_for_plotly_change(page, before)
            assert after != before

Helper functions (all take the Playwright ``page`` first)
---------------------------------------------------------
* ``open_notebook(page, name)`` -- open ``/lab/tree/<name>`` (relative to the
  served root), wait until its cells are rendered and its kernel is idle.
* ``run_all(page)`` -- run every cell of the open notebook ("Run All Cells"),
  wait for the run to finish and the kernel to be idle again; raise
  ``AssertionError`` listing the error outputs if a cell failed or did not run.
* ``open_and_run_all(page, name)`` -- both of the above; the usual first line.
* ``error_outputs(page)`` / ``assert_no_error_outputs(page)`` -- find error
  outputs (exceptions in the notebook model, tracebacks on stderr, widgets that
  failed to display).
* ``select_dropdown(page, label, index=0)`` -- choose an option (by its visible
  label) in the ``index``-th ipywidgets Dropdown of the page.
* ``click_button(page, description)`` -- click an ipywidgets Button by its text.
* ``plotly_values(page, plot=0, trace=0, key="y")`` -- a trace's data array
  (``gd.data[trace][key]``) of the ``plot``-th ``.js-plotly-plot`` as a list.
* ``wait_for_plotly_change(page, before, plot=0, trace=0, key="y")`` -- wait
  until that array differs from ``before``; return the new value.
* ``output_texts(page)`` -- the text of every output area (scope text
  assertions to outputs: a plain page search also hits the cells' source).

Timeouts are bounded everywhere (``DEFAULT_TIMEOUT_MS``; ``run_all`` takes its
own ``timeout_ms``); nothing here can hang the suite.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from processes import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DEFAULT_TIMEOUT_MS = 30_000
SERVER_STARTUP_S = 60
RUN_ALL_TIMEOUT_MS = 300_000  # a whole notebook, including a cold JIT compile

# Flags known to work for Debian's chromium as root in a container (no sandbox, no GPU,
# no background network traffic).
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]

# JupyterLab user settings for the test server.
LAB_SETTINGS = {
    # JupyterLab >= 4.2 renders only the cells in view ("windowing"): turn it off
    # so every cell and output is in the DOM.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no "would you like news?" toast covering the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False,
    },
}


# --------------------------------------------------------------------------- server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class LabServer(SimpleNamespace):
    """A running JupyterLab: ``url``, ``token``, ``root``, ``log``, ``proc``."""

    def api(self, method: str, path: str) -> tuple[int, bytes]:
        sep = "&" if "?" in path else "?"
        return _http(method, f"{self.url}{path}{sep}token={self.token}")

    def shutdown_all_kernels(self) -> None:
        status, body = self.api("GET", "/api/kernels")
        if status == 200:
            for k in json.loads(body):
                self.api("DELETE", f"/api/kernels/{k['id']}")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, chromium_executable):
    """JupyterLab on loopback serving a temp copy of notebooks/ (see module docstring)."""
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "root"
    src = REPO_ROOT / "notebooks"
    if src.is_dir():
        shutil.copytree(src, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        root.mkdir()

    env = dict(os.environ)
    for name in ("HOME", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        d = tmp / name.lower()
        d.mkdir()
        env[name] = str(d)
    env.pop("JUPYTER_PATH", None)
    settings = tmp / "lab-user-settings"
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp / "lab-workspaces")
    for rel, value in LAB_SETTINGS.items():
        f = settings / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))

    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT)
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log, proc=proc)
    try:
        deadline = time.monotonic() + SERVER_STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with status {proc.returncode}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            try:
                if server.api("GET", "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_STARTUP_S} s:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- browser

@pytest.fixture(scope="session")
def browser(chromium_executable):
    """One headless chromium for the whole session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS,
                               headless=True)
        try:
            yield b
        finally:
            b.close()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@pytest.fixture
def page(request, browser, lab_server):
    """A fresh page on the lab server; screenshot + console log saved when the test fails."""
    context = browser.new_context(base_url=lab_server.url,
                                  viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    pg = context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    pg.lab_server = lab_server  # the helpers find the token here
    try:
        yield pg
    finally:
        failed = any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
                     for when in ("setup", "call"))
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            name = _artifact_name(request.node.nodeid)
            try:
                pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, timeout=10_000)
            except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the failure
                console.append(f"[harness] screenshot failed: {exc}")
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console))
        context.close()
        lab_server.shutdown_all_kernels()


# --------------------------------------------------------------------------- helpers

# JavaScript: the NotebookPanel showing `path` (or the current widget when path is null).
_JS_PANEL = """
const panelFor = (path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  if (path === null) return app.shell.currentWidget;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path) return w;
  }
  return null;
};
"""


def _nb_path(page) -> str | None:
    return getattr(page, "_kernel_sim_nb", None)


def wait_for_kernel_idle(page, timeout_ms: int = DEFAULT_TIMEOUT_MS * 2) -> None:
    """Wait until the open notebook's kernel reports ``idle``.

    Uses the app's session context; falls back to the status bar text ``| Idle``.
    """
    page.wait_for_function(
        "(path) => {" + _JS_PANEL + """
          const p = panelFor(path);
          if (p && p.sessionContext) {
            const k = p.sessionContext.session && p.sessionContext.session.kernel;
            return !!k && k.status === 'idle' && !p.sessionContext.isRestarting;
          }
          const bar = document.querySelector('#jp-main-statusbar');
          return !!bar && /\\|\\s*Idle/.test(bar.textContent);
        }""",
        arg=_nb_path(page), timeout=timeout_ms, polling=200,
    )


def open_notebook(page, notebook_name: str, timeout_ms: int = DEFAULT_TIMEOUT_MS * 2) -> None:
    """Open ``notebook_name`` (a path relative to the served root, e.g.
    ``"02_protection_rings.ipynb"``) in JupyterLab and wait until its cells are
    rendered and its kernel is idle. ``?reset`` starts from an empty workspace,
    so notebooks opened by earlier tests are not restored as extra tabs."""
    token = page.lab_server.token
    quoted = urllib.parse.quote(notebook_name)
    page.goto(f"/lab/tree/{quoted}?reset&token={token}", timeout=timeout_ms)
    page._kernel_sim_nb = notebook_name
    page.wait_for_function(
        "(path) => {" + _JS_PANEL + """
          const p = panelFor(path);
          return !!p && p.context.isReady && p.content.widgets.length > 0;
        }""",
        arg=notebook_name, timeout=timeout_ms, polling=200,
    )
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=timeout_ms)
    wait_for_kernel_idle(page, timeout_ms)


def error_outputs(page) -> list[str]:
    """Describe every error output in the open notebook (empty list: none).

    Three sources, because each catches something the others miss:
    exceptions in the notebook *model* (``output_type == "error"``: "cell 3:
    ZeroDivisionError: division by zero"), rendered stderr outputs that contain
    a ``Traceback`` (errors printed by widget callbacks), and ipywidgets'
    "Error displaying widget" placeholders (a widget whose front end failed).
    Warnings on stderr are *not* errors.
    """
    return page.evaluate(
        "(path) => {" + _JS_PANEL + """
          const found = [];
          const p = panelFor(path);
          if (p && p.content) {
            p.content.widgets.forEach((cell, i) => {
              if (cell.model.type !== 'code') return;
              for (const o of cell.model.outputs.toJSON()) {
                if (o.output_type === 'error') found.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
              }
            });
          }
          const sel = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]';
          document.querySelectorAll(sel).forEach((el) => {
            const t = el.textContent || '';
            if (/Traceback|Error:/.test(t) && !found.some((f) => t.includes(f.split(': ').pop())))
              found.push('stderr: ' + t.trim().split('\\n').slice(-1)[0]);
          });
          document.querySelectorAll('.jp-OutputArea-output').forEach((el) => {
            if (/Error displaying widget/.test(el.textContent || ''))
              found.push('widget: ' + el.textContent.trim().slice(0, 200));
          });
          return found;
        }""",
        _nb_path(page),
    )


def assert_no_error_outputs(page) -> None:
    """Fail the test, listing them, if the open notebook shows any error output."""
    errors = error_outputs(page)
    assert not errors, "notebook shows error outputs:\n  " + "\n  ".join(errors)


def run_all(page, timeout_ms: int = RUN_ALL_TIMEOUT_MS, allow_errors: bool = False) -> None:
    """Run all cells of the open notebook and wait until they have finished.

    Waits for JupyterLab's own "run all" promise (bounded by ``timeout_ms``),
    then for the kernel to be idle. Unless ``allow_errors``, raises
    ``AssertionError`` if a cell raised (later cells are then skipped by the
    kernel) or if a non-empty code cell has no execution count.
    """
    ok = page.evaluate(
        "async ([path, ms]) => {" + _JS_PANEL + """
          const app = window.jupyterapp;
          if (!app) throw new Error('no window.jupyterapp: need --LabApp.expose_app_in_browser');
          const p = panelFor(path);
          if (p) app.shell.activateById(p.id);
          let timer;
          const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`run-all did not finish in ${ms} ms`)), ms);
          });
          try {
            return await Promise.race([app.commands.execute('notebook:run-all-cells'), timeout]);
          } finally { clearTimeout(timer); }
        }""",
        [_nb_path(page), timeout_ms],
    )
    wait_for_kernel_idle(page)
    if allow_errors:
        return
    not_run = page.evaluate(
        "(path) => {" + _JS_PANEL + """
          const p = panelFor(path);
          const missing = [];
          p.content.widgets.forEach((c, i) => {
            if (c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== ''
                && c.model.executionCount === null) missing.push(i);
          });
          return missing;
        }""",
        _nb_path(page),
    )
    errors = error_outputs(page)
    assert ok is not False and not errors and not not_run, (
        f"run all cells failed (cells not executed: {not_run}); error outputs:\n  "
        + "\n  ".join(errors or ["(none rendered)"])
    )


def open_and_run_all(page, notebook_name: str, timeout_ms: int = RUN_ALL_TIMEOUT_MS,
                     allow_errors: bool = False) -> None:
    """Open ``notebook_name`` and run all its cells; see ``open_notebook`` and ``run_all``.

    On return every code cell has run, the kernel is idle, and (unless
    ``allow_errors``) no cell raised. Widget views may still be drawing: wait
    for the element you need (``page.wait_for_selector(".js-plotly-plot")``).
    """
    open_notebook(page, notebook_name)
    run_all(page, timeout_ms=timeout_ms, allow_errors=allow_errors)


def output_texts(page) -> list[str]:
    """Text of every rendered output area of the page, in order."""
    return page.locator(".jp-OutputArea-output").all_inner_texts()


def select_dropdown(page, label: str, index: int = 0) -> None:
    """Choose the option with visible text ``label`` in the ``index``-th ipywidgets Dropdown."""
    select = page.locator(".widget-dropdown select").nth(index)
    select.wait_for(state="visible")
    select.select_option(label=label)


def click_button(page, description: str) -> None:
    """Click the ipywidgets Button whose text is ``description``."""
    page.locator("button.jupyter-button", has_text=description).first.click()


_JS_PLOTLY = """
([plot, trace, key]) => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  const gd = plots[plot];
  if (!gd || !gd.data || !gd.data[trace]) return null;
  let v = gd.data[trace][key];
  // plotly >= 6 may ship arrays as {dtype, bdata}; the decoded copy is in _fullData
  if (v && !Array.isArray(v) && !ArrayBuffer.isView(v) && gd._fullData && gd._fullData[trace])
    v = gd._fullData[trace][key];
  if (v === undefined || v === null) return null;
  return (Array.isArray(v) || ArrayBuffer.isView(v)) ? Array.from(v) : v;
}
"""


def plotly_values(page, plot: int = 0, trace: int = 0, key: str = "y"):
    """``gd.data[trace][key]`` of the ``plot``-th Plotly figure on the page, as a list.

    Waits (bounded) for that figure to exist and have the trace.
    """
    page.wait_for_function(f"(a) => ({_JS_PLOTLY})(a) !== null", arg=[plot, trace, key],
                           polling=200)
    return page.evaluate(_JS_PLOTLY, [plot, trace, key])


def wait_for_plotly_change(page, before, plot: int = 0, trace: int = 0, key: str = "y",
                           timeout_ms: int = DEFAULT_TIMEOUT_MS):
    """Wait until ``plotly_values(page, plot, trace, key)`` differs from ``before``;
    return the new value (``AssertionError`` with both values on timeout)."""
    try:
        page.wait_for_function(
            f"([a, old]) => {{ const v = ({_JS_PLOTLY})(a); "
            "return v !== null && JSON.stringify(v) !== JSON.stringify(old); }",
            arg=[[plot, trace, key], before], timeout=timeout_ms, polling=100,
        )
    except Exception as exc:  # playwright TimeoutError
        now = page.evaluate(_JS_PLOTLY, [plot, trace, key])
        raise AssertionError(f"plot {plot} trace {trace} {key!r} did not change within "
                             f"{timeout_ms} ms: before={before!r} now={now!r}") from exc
    return page.evaluate(_JS_PLOTLY, [plot, trace, key])


@pytest.fixture
def jlab(lab_server):
    """The helper functions of this module plus the server (``jlab.server``, ``jlab.root``)."""
    return SimpleNamespace(
        server=lab_server, root=lab_server.root,
        open_notebook=open_notebook, run_all=run_all, open_and_run_all=open_and_run_all,
        wait_for_kernel_idle=wait_for_kernel_idle,
        error_outputs=error_outputs, assert_no_error_outputs=assert_no_error_outputs,
        output_texts=output_texts, select_dropdown=select_dropdown, click_button=click_button,
        plotly_values=plotly_values, wait_for_plotly_change=wait_for_plotly_change,
    )
