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
* ``select_multiple(page, indices, index=0)`` -- choose exactly the options at
  positions ``indices`` (0-based) of the ``index``-th SelectMultiple.
* ``set_checkbox(page, checked, index=0)`` -- tick or untick the ``index``-th
  ipywidgets Checkbox.
* ``find_plot(page, title)`` -- index of the Plotly figure whose title is ``title``.
* ``plotly_traces(page, plot=0, keys=("x", "y", "visible"))`` -- every trace of a
  figure as a dict of those keys (binary arrays decoded).
* ``wait_for_plotly_traces(page, expected, plot=0)`` -- wait until the traces
  equal ``expected`` (same form); return what the page shows.
* ``wait_for_outputs_rendered(page)`` -- wait (bounded) until every widget and
  Plotly output of the open notebook is drawn, then check each widget output
  against the kernel: as many widget views and figures in the DOM as the widget
  tree in the kernel has. Returns a report; ``AssertionError`` listing what did
  not render.
* ``figure_problems(page)`` -- accessibility of every Plotly figure on the page:
  a title (``gd.layout.title.text`` and drawn), and a title on every axis that
  is drawn with tick labels. Empty list: all good.

Stage time
----------
The browser stage must stay under ``BROWSER_STAGE_BUDGET_S`` on a 2-core
machine (one server and one browser for the whole session, never one per test).
At the end of the run pytest prints the stage's wall time (first browser test's
setup to last browser test's teardown, including the server start) and says so
when it is over budget.

Timeouts are bounded everywhere (``DEFAULT_TIMEOUT_MS``; ``run_all`` takes its
own ``timeout_ms``); nothing here can hang the suite.
"""

from __future__ import annotations

import ast
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
RENDER_TIMEOUT_MS = 30_000    # widgets and figures drawn after the kernel went idle
BROWSER_STAGE_BUDGET_S = 300  # the whole tests/browser stage, 2 cores
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"

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


# --------------------------------------------------------------------------- stage timer

HERE = Path(__file__).resolve().parent
_STAGE = SimpleNamespace(tests=0, first=None, last=None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Time the browser stage: from the first browser test's setup (which starts the server
    and the browser) to the end of the last one's teardown (which stops them)."""
    if HERE not in Path(str(item.path)).resolve().parents:
        yield
        return
    if _STAGE.first is None:
        _STAGE.first = time.monotonic()
    yield
    _STAGE.last = time.monotonic()
    _STAGE.tests += 1


def pytest_terminal_summary(terminalreporter):
    """Print the browser stage's wall time, and a warning when it is over budget."""
    if not _STAGE.tests:
        return
    wall = _STAGE.last - _STAGE.first
    line = (f"browser stage: {_STAGE.tests} tests in {wall:.1f} s wall time "
            f"(budget {BROWSER_STAGE_BUDGET_S} s)")
    if wall > BROWSER_STAGE_BUDGET_S:
        terminalreporter.write_line(
            line + " -- OVER BUDGET: look for per-test servers, long fixed waits or "
                   "notebooks run more often than needed", red=True, bold=True)
    else:
        terminalreporter.write_line(line, green=True)


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
    "Error displaying widget" placeholders and error views (a widget, or a
    widget inside a box, whose front end failed).
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
            const failed = el.querySelectorAll('.jupyter-widgets-error-widget').length;
            if (failed) found.push(`widget: ${failed} view(s) failed to draw (error view)`);
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


def select_multiple(page, indices, index: int = 0) -> None:
    """Choose exactly the options at positions ``indices`` (0-based, in the order shown) of
    the ``index``-th ipywidgets SelectMultiple; an empty list deselects everything."""
    select = page.locator(".widget-select-multiple select").nth(index)
    select.wait_for(state="visible")
    select.select_option(index=list(indices))


def set_checkbox(page, checked: bool, index: int = 0) -> None:
    """Tick (``checked=True``) or untick the ``index``-th ipywidgets Checkbox."""
    box = page.locator(".widget-checkbox input[type=checkbox]").nth(index)
    box.wait_for(state="visible")
    box.set_checked(checked)


_JS_TITLE = """
(t) => (typeof t === 'string' ? t : (t && typeof t.text === 'string' ? t.text : ''))
"""


def find_plot(page, title: str, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> int:
    """Index (among the page's ``.js-plotly-plot``) of the figure whose title is ``title``;
    waits (bounded) for it to appear."""
    js = ("(want) => Array.from(document.querySelectorAll('.js-plotly-plot'))"
          f".findIndex((gd) => gd.layout && ({_JS_TITLE})(gd.layout.title) === want)")
    try:
        page.wait_for_function(f"(want) => ({js})(want) >= 0", arg=title, timeout=timeout_ms,
                               polling=200)
    except Exception as exc:  # playwright TimeoutError
        titles = page.evaluate(
            "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
            f".map((gd) => gd.layout && ({_JS_TITLE})(gd.layout.title))")
        raise AssertionError(f"no figure titled {title!r}; titles on the page: {titles}") from exc
    return page.evaluate(js, title)


# Plotly >= 6 may send arrays as {dtype, bdata (base64), shape}: decode them.
_JS_DECODE = """
(v) => {
  if (v && typeof v === 'object' && !Array.isArray(v) && typeof v.bdata === 'string') {
    const T = {i1: Int8Array, u1: Uint8Array, i2: Int16Array, u2: Uint16Array, i4: Int32Array,
               u4: Uint32Array, f4: Float32Array, f8: Float64Array}[v.dtype];
    if (!T) return v;
    const raw = atob(v.bdata), bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return Array.from(new T(bytes.buffer));
  }
  if (ArrayBuffer.isView(v)) return Array.from(v);
  return v === undefined ? null : v;
}
"""


def plotly_traces(page, plot: int = 0, keys=("x", "y", "visible")) -> list[dict]:
    """Every trace of the ``plot``-th figure as ``{key: value}`` (from ``gd.data``, binary
    arrays decoded, missing keys as ``None``). ``visible`` is ``True`` unless the trace says
    otherwise, as Plotly reads it."""
    page.wait_for_function("(i) => { const gd = document.querySelectorAll('.js-plotly-plot')[i];"
                           " return !!gd && Array.isArray(gd.data); }", arg=plot, polling=200)
    return page.evaluate(
        "([i, keys]) => { const decode = " + _JS_DECODE + """;
          const gd = document.querySelectorAll('.js-plotly-plot')[i];
          return gd.data.map((t) => {
            const row = {};
            for (const k of keys) row[k] = decode(t[k]);
            if ('visible' in row && row.visible === null) row.visible = true;
            return row;
          });
        }""",
        [plot, list(keys)],
    )


def wait_for_plotly_traces(page, expected: list[dict], plot: int = 0,
                           timeout_ms: int = DEFAULT_TIMEOUT_MS) -> list[dict]:
    """Wait (bounded) until ``plotly_traces(page, plot, keys)`` equals ``expected`` (a list of
    dicts; ``keys`` are those of its first dict) and return what the page shows -- the last
    value seen if it never matched, so ``assert wait_for_plotly_traces(...) == expected``
    shows the difference."""
    keys = tuple(expected[0]) if expected else ("visible",)
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        now = plotly_traces(page, plot, keys)
        if now == expected or time.monotonic() > deadline:
            return now
        page.wait_for_timeout(100)


# JavaScript: every widget and Plotly output of the open notebook, with its render state.
# Output j of a cell's model is drawn by child j of the cell's output area. ipywidgets'
# renderer writes "Loading widget..." or "Error displaying widget..." as its own text and
# adds the view (class jupyter-widgets) as a child once it is drawn; a view that failed
# inside it (e.g. a box's child whose code did not load) is drawn as an error view
# (class jupyter-widgets-error-widget, "Click to show javascript error.").
_JS_OUTPUTS = """
([path, widgetMime, plotlyMime]) => {""" + _JS_PANEL + """
  const p = panelFor(path);
  const report = {widgets: [], plots: []};
  if (!p || !p.content) return report;
  p.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code' || !cell.outputArea) return;
    const children = cell.outputArea.widgets;
    cell.model.outputs.toJSON().forEach((o, j) => {
      const data = o.data || {};
      const child = children[j];
      const el = child && (child.node.matches('.jp-OutputArea-output') ? child.node
                           : child.node.querySelector('.jp-OutputArea-output'));
      if (widgetMime in data) {
        let state = 'missing';
        if (el) {
          const own = Array.from(el.childNodes).filter((n) => n.nodeType === 3)
            .map((n) => n.textContent).join(' ').trim();
          const view = Array.from(el.children).some((c) => c.classList.contains('jupyter-widgets'));
          const failed = el.querySelectorAll('.jupyter-widgets-error-widget').length;
          if (/Error displaying widget/.test(el.textContent || '')) state = 'error: ' + own;
          else if (failed) state = `error: ${failed} widget view(s) failed to draw`;
          else if (own) state = own;                      // e.g. "Loading widget..."
          else if (view) state = 'rendered';
        }
        const plots = el ? Array.from(el.querySelectorAll('.js-plotly-plot')) : [];
        report.widgets.push({
          cell: i, output: j, model_id: data[widgetMime].model_id, state,
          views: el ? el.querySelectorAll('.jupyter-widgets').length : 0,
          plots: plots.filter((gd) => !!gd._fullLayout).length,
        });
      } else if (plotlyMime in data) {
        const ok = !!el && el.matches('.js-plotly-plot') && !!el._fullLayout;
        report.plots.push({cell: i, output: j, state: ok ? 'rendered' : 'missing'});
      }
    });
  });
  return report;
}
"""

# Python, evaluated in the kernel as a user expression (no statement, nothing stored): for
# each model id, the library class ("module.Name") of the widget and of all its descendants.
# The library class is the first class in the MRO that comes from ipywidgets, plotly or
# anywidget (a course widget such as RingExplorer subclasses ipywidgets' VBox).
_PY_WIDGET_TREES = (
    "__import__('json').dumps((lambda inst, walk: {m: walk(walk, inst[m]) if m in inst else None"
    " for m in %s})(__import__('ipywidgets').widgets.widget._instances,"
    " lambda walk, w: [next((c.__module__ + '.' + c.__name__ for c in type(w).__mro__"
    " if c.__module__.split('.')[0] in ('ipywidgets', 'plotly', 'anywidget')),"
    " type(w).__module__ + '.' + type(w).__name__)]"
    " + [n for c in (getattr(w, 'children', None) or ()) for n in walk(walk, c)]))"
)


def kernel_widget_trees(page, model_ids) -> dict:
    """Ask the open notebook's kernel which widgets ``model_ids`` are: ``{model_id: [library
    classes of the widget and all its descendants]}``, e.g. ``["ipywidgets.widgets.widget_box.
    VBox", ...]`` (``None`` for an id the kernel does not know). Runs silently as a user
    expression: no cell, no history, nothing stored in the learner's namespace."""
    expr = _PY_WIDGET_TREES % repr(sorted(model_ids))
    reply = page.evaluate(
        "async ([path, expr]) => {" + _JS_PANEL + """
          const p = panelFor(path);
          const k = p.sessionContext.session.kernel;
          const future = k.requestExecute({code: '', silent: true, store_history: false,
                                           user_expressions: {r: expr}});
          const msg = await future.done;
          return msg.content.user_expressions.r;
        }""",
        [_nb_path(page), expr],
    )
    if reply.get("status") != "ok":
        raise AssertionError(f"kernel could not list the widgets: {reply.get('ename')}: "
                             f"{reply.get('evalue')}")
    return json.loads(ast.literal_eval(reply["data"]["text/plain"]))


def _expected_views(classes: list[str]) -> tuple[int, int]:
    """(ipywidgets views, Plotly FigureWidgets) a widget tree draws. A class the harness does
    not know fails loudly, so a new kind of widget is not silently left unchecked."""
    views = plots = 0
    for name in classes:
        if name.startswith("ipywidgets."):
            views += 1          # every ipywidgets DOM view carries the class jupyter-widgets
        elif name.startswith("plotly.") and name.endswith(".FigureWidget"):
            plots += 1          # drawn as one .js-plotly-plot
        else:
            raise AssertionError(f"the harness does not know how a {name} view is drawn: "
                                 "teach _expected_views in tests/browser/conftest.py")
    return views, plots


def wait_for_outputs_rendered(page, timeout_ms: int = RENDER_TIMEOUT_MS) -> dict:
    """Wait until every widget and Plotly output of the open notebook is drawn.

    Expected from the notebook model: one rendered view per output with the widget mime type
    (``application/vnd.jupyter.widget-view+json``), one drawn figure per Plotly output. Then,
    per widget output, from the kernel's widget tree: as many ipywidgets views (class
    ``jupyter-widgets``) and Plotly figures inside it as the widget has descendants. Waits at
    most ``timeout_ms`` for all of that; ``AssertionError`` naming each output that is
    missing, still "Loading widget...", "Error displaying widget", or short of views. Returns
    the report ``{"widgets": [...], "plots": [...]}`` (one entry per output, in order).
    """
    args = [_nb_path(page), WIDGET_MIME, PLOTLY_MIME]
    # done when everything is drawn, or as soon as something failed for good
    drawn = ("(a) => { const r = (" + _JS_OUTPUTS + ")(a);"
             " return r.widgets.some((w) => w.state.startsWith('error'))"
             " || (r.widgets.every((w) => w.state === 'rendered')"
             " && r.plots.every((f) => f.state === 'rendered')); }")
    deadline = time.monotonic() + timeout_ms / 1000
    try:
        page.wait_for_function(drawn, arg=args, timeout=timeout_ms, polling=200)
    except Exception:  # playwright TimeoutError: report below
        pass
    report = page.evaluate(_JS_OUTPUTS, args)
    bad = [f"cell {o['cell']} output {o['output']}: widget {o['state']!r}"
           for o in report["widgets"] if o["state"] != "rendered"]
    bad += [f"cell {o['cell']} output {o['output']}: Plotly figure {o['state']}"
            for o in report["plots"] if o["state"] != "rendered"]
    assert not bad, f"outputs not drawn (waited at most {timeout_ms} ms):\n  " + "\n  ".join(bad)
    if not report["widgets"]:
        return report

    # the kernel's widget trees: how many views and figures each widget output must draw
    trees = kernel_widget_trees(page, {o["model_id"] for o in report["widgets"]})
    expected = []
    for o in report["widgets"]:
        tree = trees.get(o["model_id"])
        assert tree, (f"cell {o['cell']}: the kernel has no widget {o['model_id']} "
                      "(closed after it was displayed?)")
        expected.append(_expected_views(tree))

    def short_of_views(rep) -> list[str]:
        return [f"cell {o['cell']} output {o['output']}: {o['views']} widget views and "
                f"{o['plots']} figures drawn, expected {views} and {plots}"
                for o, (views, plots) in zip(rep["widgets"], expected, strict=True)
                if (o["views"], o["plots"]) != (views, plots)]

    while short_of_views(report) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        report = page.evaluate(_JS_OUTPUTS, args)
    missing = short_of_views(report)
    assert not missing, "widgets not fully drawn:\n  " + "\n  ".join(missing)
    return report


_JS_FIGURES = """
() => { const title = """ + _JS_TITLE + """;
  return Array.from(document.querySelectorAll('.js-plotly-plot')).map((gd) => {
    const layout = gd.layout || {}, full = gd._fullLayout || {};
    const drawn = gd.querySelector('.gtitle');
    const axes = Object.keys(full).filter((k) => /^[xy]axis\\d*$/.test(k)).map((k) => ({
      name: k, title: title(layout[k] && layout[k].title),
      labelled: full[k].visible !== false && full[k].showticklabels !== false,
    }));
    return {title: title(layout.title), drawn: drawn ? drawn.textContent.trim() : '',
            rendered: !!gd._fullLayout, axes};
  });
}
"""


def figure_problems(page) -> list[str]:
    """Accessibility problems of the page's Plotly figures (empty list: none).

    Every figure needs a title (``gd.layout.title.text``, and drawn on the figure), and every
    axis drawn with tick labels needs an axis title (a scale without a name cannot be read
    aloud). Axes that are hidden, or that share another axis' labels (``showticklabels``
    false, e.g. the upper panel of a shared x axis), need none.
    """
    problems = []
    for i, fig in enumerate(page.evaluate(_JS_FIGURES)):
        name = f"figure {i} ({fig['title']!r})"
        if not fig["rendered"]:
            problems.append(f"figure {i}: not drawn by Plotly")
            continue
        if not fig["title"].strip():
            problems.append(f"figure {i}: no title (layout.title.text is empty)")
        elif not fig["drawn"]:
            problems.append(f"{name}: title set but not drawn")
        for ax in fig["axes"]:
            if ax["labelled"] and not ax["title"].strip():
                problems.append(f"{name}: {ax['name']} has tick labels but no title")
    return problems


def assert_figures_accessible(page) -> None:
    """Fail, listing them, if any Plotly figure on the page lacks a title or an axis title."""
    problems = figure_problems(page)
    assert not problems, "figures fail the accessibility rules:\n  " + "\n  ".join(problems)


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
        select_multiple=select_multiple, set_checkbox=set_checkbox, find_plot=find_plot,
        plotly_traces=plotly_traces, wait_for_plotly_traces=wait_for_plotly_traces,
        kernel_widget_trees=kernel_widget_trees,
        wait_for_outputs_rendered=wait_for_outputs_rendered, figure_problems=figure_problems,
        assert_figures_accessible=assert_figures_accessible,
    )
