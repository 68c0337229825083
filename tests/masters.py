"""Read the exercise solutions out of a notebook master (``course/masters/NN_*.ipynb``).

Used by the per-notebook exercise tests: each checker must accept the master's own solution, so
a solution that drifts from the simulator fails here as well as when the master runs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

MASTERS = Path(__file__).resolve().parent.parent / "course" / "masters"


def master_path(number: str) -> Path:
    """The master of notebook ``number`` ("04"), found by its prefix."""
    (path,) = MASTERS.glob(f"{number}_*.ipynb")
    return path


def master_solutions(number: str) -> dict:
    """{exercise id: the value the master's solution assigns to ``answer``}."""
    out = {}
    for cell in json.loads(master_path(number).read_text(encoding="utf-8"))["cells"]:
        src = "".join(cell["source"])
        m = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, re.S)
        ex = re.search(rf'check\("({number}\.\d+)"', src)
        if cell["cell_type"] == "code" and m and ex:
            scope: dict = {}
            exec(m.group(1), scope)
            out[ex.group(1)] = scope["answer"]
    return out
