"""Helpers for the first cell of every notebook.

``setup()`` checks that the libraries the course needs are importable and recent enough, then
warms the jitted kernels with a visible message, so that no later cell sits silent for seconds
while Numba compiles.  It is cheap to call again.
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import Dict

#: minimum versions (the floors of pyproject.toml)
REQUIRED = {"numba": "0.63", "numpy": "1.26", "plotly": "6.1", "ipywidgets": "8.1.5"}


def _version_tuple(text: str):
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def versions() -> Dict[str, str]:
    """Installed versions of Python and the required libraries."""
    out = {"python": sys.version.split()[0]}
    for name in REQUIRED:
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = "missing"
    from . import __version__
    out["kernel_sim"] = __version__
    return out


def setup(verbose: bool = True) -> None:
    """Check versions and warm the kernels.  Raises RuntimeError naming what to install.

    Returns None so that a notebook's first cell shows only the two progress lines; call
    :func:`versions` for the numbers.
    """
    found = versions()
    problems = [f"{name} {found[name]} (need >= {floor})" for name, floor in REQUIRED.items()
                if found[name] == "missing" or _version_tuple(found[name]) < _version_tuple(floor)]
    if problems:
        raise RuntimeError("kernel_sim needs newer libraries: " + ", ".join(problems)
                           + ".  Run `make lab` (or `pip install -e .`) in the course folder.")
    if verbose:
        print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
        print("warming up the simulator (compiles once, then loads from the cache) ...",
              end=" ", flush=True)
    t0 = time.perf_counter()
    from .tools.warm import warm_all
    warm_all()
    if verbose:
        print(f"ready in {time.perf_counter() - t0:.1f} s")
