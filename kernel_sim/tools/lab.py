"""``python -m kernel_sim lab``: open the course in JupyterLab.

This is what ``make lab`` runs after installing the package. It starts the
JupyterLab that belongs to *this* Python interpreter (``sys.executable -m
jupyterlab``), so the notebooks' kernel sees the same installed ``kernel_sim``,
and it lands the learner on ``notebooks/00_start_here.ipynb``.

What it decides for you (each can be overridden):

* **root directory**: the repository root (the folder that holds ``notebooks/``),
  looked up from the current directory first, then next to the installed
  package (a source checkout installed with ``pip install -e .``);
* **address**: ``127.0.0.1`` and port 8888, or a free port when 8888 is taken;
  the exact URL is printed before the server starts;
* **token**: a random one, printed as part of that URL;
* **root user**: ``--allow-root`` is added when running as root (containers),
  because Jupyter refuses to start as root otherwise.

Any option this command does not know is passed to JupyterLab unchanged, e.g.
``python -m kernel_sim lab --no-browser --port 9000 --ServerApp.base_url=/x/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: The notebook a learner should see first, relative to the repository root.
START_NOTEBOOK = "notebooks/00_start_here.ipynb"
DEFAULT_PORT = 8888
DEFAULT_IP = "127.0.0.1"

# Options that already set a token; when one is passed through we do not add ours.
_TOKEN_OPTIONS = ("--IdentityProvider.token", "--ServerApp.token", "--NotebookApp.token")


@dataclass
class LabCommand:
    """Everything needed to start the server: what to run, where, and the URL to open."""

    argv: list[str]
    cwd: Path
    url: str


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kernel_sim lab",
        description="Open the kernel_sim course in JupyterLab. Unknown options go to JupyterLab.",
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--port", type=int, default=None,
                   help=f"port to listen on (default {DEFAULT_PORT}, or a free one if taken)")
    p.add_argument("--ip", default=DEFAULT_IP, help=f"address to listen on (default {DEFAULT_IP})")
    p.add_argument("--token", default=None,
                   help="access token (default: a random one, shown in the printed URL)")
    p.add_argument("--root-dir", type=Path, default=None,
                   help="folder to serve (default: the repository root that holds notebooks/)")
    p.add_argument("--notebook", default=START_NOTEBOOK,
                   help=f"notebook to open, relative to the root (default {START_NOTEBOOK})")
    return p


def find_root(notebook: str = START_NOTEBOOK, cwd: Path | None = None) -> Path | None:
    """Return the folder that contains ``notebook`` (the repository root), or None.

    Looks in the current directory, then in the folder above the ``kernel_sim``
    package (true for a source checkout installed in editable mode).
    """
    here = Path.cwd() if cwd is None else Path(cwd)
    candidates = [here, Path(__file__).resolve().parent.parent]
    for root in candidates:
        if (root / notebook).is_file():
            return root.resolve()
    return None


def _port_is_free(ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _free_port(ip: str) -> int:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def build_lab_command(argv: list[str] | None = None, *, root: Path | None = None) -> LabCommand:
    """Turn ``lab`` command-line options into the JupyterLab command line.

    Raises ``FileNotFoundError`` with a learner-readable message when the
    notebooks cannot be found. Does not start anything.
    """
    args, passthrough = _parser().parse_known_args([] if argv is None else list(argv))
    notebook = args.notebook.replace(os.sep, "/")
    if args.root_dir is not None:
        root = args.root_dir.resolve()
        if not (root / notebook).is_file():
            raise FileNotFoundError(f"{notebook} not found under --root-dir {root}")
    elif root is None:
        root = find_root(notebook)
        if root is None:
            raise FileNotFoundError(
                f"cannot find {notebook}. Run this command from the root of the kernel_sim "
                "repository (the folder with notebooks/ and Makefile), or pass --root-dir."
            )

    port = args.port
    if port is None:
        port = DEFAULT_PORT if _port_is_free(args.ip, DEFAULT_PORT) else _free_port(args.ip)

    cmd = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.ip={args.ip}",
        f"--ServerApp.port={port}",
        # we print the URL with this port, so Jupyter must not silently move to another one
        "--ServerApp.port_retries=0",
        # `/` and the browser that Jupyter opens land on the first notebook
        f"--LabApp.default_url=/lab/tree/{notebook}",
    ]
    token = args.token
    token_passed_through = any(a.split("=")[0] in _TOKEN_OPTIONS for a in passthrough)
    if token is None and not token_passed_through:
        token = secrets.token_hex(24)
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if args.no_browser:
        cmd.append("--no-browser")
    if _is_root() and "--allow-root" not in passthrough:
        cmd.append("--allow-root")
    cmd += passthrough

    host = args.ip
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/lab/tree/{notebook}"
    if token:
        url += f"?token={token}"
    return LabCommand(argv=cmd, cwd=root, url=url)


def main_lab(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kernel_sim lab [options]``; returns an exit status.

    On POSIX the JupyterLab server *replaces* this process (``os.execv``), so
    Ctrl-C and ``kill <pid>`` reach the server directly.
    """
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "JupyterLab is not installed for this Python "
            f"({sys.executable}).\nInstall the course first:  python -m pip install -e .   "
            "(or simply run `make lab` from the repository root), then try again.",
            file=sys.stderr,
        )
        return 1
    try:
        lab = build_lab_command(argv)
    except FileNotFoundError as exc:
        print(f"kernel_sim lab: {exc}", file=sys.stderr)
        return 1

    if _is_root() and "--allow-root" in lab.argv:
        print("(running as root: passing --allow-root to JupyterLab)")
    print(f"Serving {lab.cwd}")
    print("Open the course at this URL (if no browser window appears):")
    print(f"    {lab.url}")
    print("Stop the server with Ctrl-C.", flush=True)
    sys.stderr.flush()

    os.chdir(lab.cwd)
    if os.name == "posix":
        os.execv(sys.executable, lab.argv)  # does not return
    try:  # Windows: no real exec, run as a child and forward its exit status
        return subprocess.call(lab.argv)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_lab(sys.argv[1:]))
