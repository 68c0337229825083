"""kernel_sim: learn how virtualization works by running it.

A small simulated computer -- a toy ISA with x86-style protection rings, an MMU with multi-level
page tables and a TLB, a timer and a console -- runs as Numba-jitted kernels.  Start with
``notebooks/00_start_here.ipynb``, or from Python::

    from kernel_sim import Machine, assemble
    m = Machine()
    m.load(assemble("start: movi r1, 42\\n hlt\\n"))
    print(m.run().text())
"""
from __future__ import annotations

__version__ = "0.1.0"

from .machine import Machine  # noqa: E402

__all__ = ["Machine", "assemble", "AsmError", "run_source", "__version__"]


def __getattr__(name):
    # The assembler is imported lazily so that `import kernel_sim` stays cheap.
    if name in ("assemble", "AsmError"):
        from . import asm
        return getattr(asm, name)
    if name == "run_source":
        from .runner import run_source
        return run_source
    raise AttributeError(f"module 'kernel_sim' has no attribute {name!r}")
