"""The monitor's nested page table (EPT): guest-physical -> host-physical, built on first touch.

With nested paging the guest owns its page tables outright -- it writes them, loads its PTBR and
runs INVLPG without the monitor ever knowing -- and the hardware walks them *through* a second
table that the monitor owns.  This module keeps that second table.

* It starts **empty**.  The first access to each guest-physical page finds no nested entry: an
  **EPT violation** exits to the monitor, which maps the page (``guest_base + gpa``, read, write
  and execute) and lets the guest retry.  A guest that touches N pages of its RAM costs N such
  exits, once; after that the guest's page-table activity costs the monitor nothing.
* Nested entries map **only the guest's RAM**: a guest-physical address beyond it is never
  mapped, so the guest can never reach the monitor's memory; the monitor turns such an access
  into the bus error the bare machine would raise, #GP(0).
* Tables come from the monitor's :class:`~kernel_sim.monitors.shadow.FrameAllocator`.  Entries
  use the layout of :mod:`kernel_sim.mmu` (``EPT_R``, ``EPT_W``, ``EPT_X``, frame in bits
  31..12).
"""
from __future__ import annotations

import numpy as np

from .. import isa
from ..mmu import EPT_RWX
from .shadow import FrameAllocator

PAGE = isa.PAGE_SIZE
FRAME = isa.PTE_FRAME_MASK


class NestedPager:
    """An ``levels``-level nested table for a guest whose RAM is ``ram_size`` bytes at
    host-physical ``base``.  ``root`` is the EPT pointer."""

    def __init__(self, mem: np.ndarray, allocator: FrameAllocator, base: int, ram_size: int,
                 levels: int = 4):
        if not 1 <= levels <= 4:
            raise ValueError(f"nested levels must be between 1 and 4, got {levels}")
        if levels == 1 and ram_size > 1024 * PAGE:
            raise ValueError("a 1-level nested table maps only 4 MiB of guest-physical memory")
        self.mem = mem
        self.alloc = allocator
        self.base = base
        self.ram_size = ram_size
        self.levels = levels
        self.root = allocator.alloc()
        self.tables = [self.root]
        self.mapped = 0            # guest pages mapped so far

    def map_page(self, gpa: int) -> bool:
        """Map the guest-physical page holding ``gpa`` (RWX) to its place in host memory.

        Returns False, mapping nothing, when ``gpa`` is outside the guest's RAM.
        """
        if not 0 <= gpa < self.ram_size:
            return False
        mem = self.mem
        table = self.root
        for k in range(self.levels - 1, 0, -1):
            slot = (table >> 2) + ((gpa >> (12 + 10 * k)) & 0x3FF)
            entry = int(mem[slot])
            if not entry & EPT_RWX:
                new = self.alloc.alloc()
                self.tables.append(new)
                entry = new | EPT_RWX
                mem[slot] = entry
            table = entry & FRAME
        slot = (table >> 2) + ((gpa >> 12) & 0x3FF)
        if not int(mem[slot]) & EPT_RWX:
            self.mapped += 1
        mem[slot] = ((self.base + (gpa & FRAME)) & FRAME) | EPT_RWX
        return True

    def check_containment(self) -> list[str]:
        """Problems: a nested leaf outside the guest's RAM or a table outside the monitor's
        frames (an empty list when the nested table maps only the guest's slice)."""
        problems = []
        lo, hi = self.base, self.base + self.ram_size
        stack = [(self.root, self.levels - 1)]
        while stack:
            table, level = stack.pop()
            if not self.alloc.first <= table < self.alloc.limit:
                problems.append(f"nested table 0x{table:x} outside the monitor's frames")
                continue
            words = self.mem[table >> 2:(table >> 2) + 1024]
            for idx in np.nonzero(words & EPT_RWX)[0]:
                target = int(words[idx]) & FRAME
                if level > 0:
                    stack.append((target, level - 1))
                elif not lo <= target < hi:
                    problems.append(f"nested leaf maps host frame 0x{target:x} outside the "
                                    f"guest")
        return problems


__all__ = ["NestedPager"]
