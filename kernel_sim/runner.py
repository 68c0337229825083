"""Convenience: assemble a program, build a machine, run, and return the Result.

This is the one call notebooks and the command line use for a quick experiment::

    from kernel_sim import run_source
    result = run_source("start: movi r1, 'A'\\n out console, r1\\n hlt\\n", ring=0)
    print(result.console)     # "A"
"""
from __future__ import annotations

from typing import Dict, Optional

from .asm import assemble
from .machine import Machine

DEFAULT_COUNT = 1_000_000


def build_machine(source: str, filename: str = "<source>", *, ring: int = 0,
                  paging_levels: int = 2, tlb_size: int = 64, strict: bool = False,
                  memory_size: int = 4 << 20, defines: Optional[Dict[str, int]] = None,
                  costs: Optional[Dict[str, int]] = None) -> Machine:
    """Assemble ``source`` and load it into a new machine (raises AsmError / ValueError)."""
    program = assemble(source, filename=filename, defines=defines)
    machine = Machine(memory_size=memory_size, paging_levels=paging_levels, tlb_size=tlb_size,
                      strict=strict, ring=ring, costs=costs)
    return machine.load(program)


def run_source(source: str, filename: str = "<source>", *, count: int = DEFAULT_COUNT,
               until: Optional[int] = None, **settings):
    """Assemble, load and run ``source``; return the :class:`~kernel_sim.results.Result`.

    ``settings`` are those of :func:`build_machine` (ring, paging_levels, tlb_size, strict,
    memory_size, defines, costs).
    """
    return build_machine(source, filename, **settings).run(count=count, until=until)
