"""Warm-up: compile every jitted entry point once, so no notebook cell sits silent for seconds.

Numba compiles a kernel the first time it is called with given argument types and stores the
machine code in its on-disk cache (``NUMBA_CACHE_DIR``, or ``__pycache__`` beside the sources).
:func:`warm_all` runs a tiny program that reaches every kernel, paging on and off.
"""
from __future__ import annotations

import numpy as np

from . import isa
from .machine import Machine


def warm_all() -> None:
    """Trigger compilation of every jitted kernel (cheap when the cache is warm)."""
    from types import SimpleNamespace
    words = np.array([isa.encode(isa.OP_MOVI, 1, 0, 7), isa.encode(isa.OP_HLT)], dtype=np.uint32)
    program = SimpleNamespace(segments=[(0, words)], entry=0)
    m = Machine(memory_size=64 << 10, tlb_size=4)
    m.load(program).run(count=10)
