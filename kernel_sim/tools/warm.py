"""Warm-up: compile every jitted entry point once, so no notebook cell sits silent for seconds.

Numba compiles a jitted function the first time it is called with a given combination of
argument *types* (its signature) and stores the machine code in its on-disk cache
(``NUMBA_CACHE_DIR``, or ``__pycache__`` beside the sources).  Later calls with the same types
reuse it; a new combination of types means a new compilation.

The simulator has one entry point called from Python, :func:`kernel_sim.cpu.run_native`, and
:meth:`kernel_sim.machine.Machine.run` always calls it with the same types (fixed-dtype NumPy
arrays and an integer budget), whatever the program, ring, memory size, TLB size or paging
depth.  Compiling ``run_native`` compiles everything it calls (the MMU, trap delivery, ports)
into the same machine code, so one short run through :class:`~kernel_sim.machine.Machine`
warms the code of every instruction, paging on or off -- it does not need to *execute* them.
``tests/test_warm.py`` checks that the notebooks' code compiles nothing after
:func:`warm_all`.

The ``emulation`` technique has a second entry point, its soft CPU
(:func:`kernel_sim.monitors.emulation_kernel.emulate`); its mode is an integer argument, so one
short emulated run warms both the interpreter and the translation-block path.  The other
techniques run the guest on the hardware CPU (``run_native``) and need nothing more.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import isa
from ..machine import Machine


def warm_all() -> None:
    """Compile (or load from the cache) every jitted kernel; fast when the cache is warm.

    Runs a two-instruction program (``movi r1, 7`` then ``hlt``) on a small machine.  It goes
    through :meth:`Machine.run` on purpose: that is the call every experiment makes, so the
    argument types are the ones the notebooks will use.
    """
    words = np.array([isa.encode(isa.OP_MOVI, 1, 0, 7), isa.encode(isa.OP_HLT)], dtype=np.uint32)
    program = SimpleNamespace(segments=[(0, words)], entry=0)
    machine = Machine(memory_size=64 << 10, tlb_size=4)
    machine.load(program).run(count=10)
    from ..monitors.base import ProgramImage
    from ..monitors.emulation import Emulation
    Emulation(ProgramImage.from_program(program, ram_size=64 << 10)).run(10)
