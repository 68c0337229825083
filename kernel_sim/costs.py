"""The cost model: simulated cycles per event.

Simulated cycles are deterministic -- the same program gives the same cycles on every computer --
so plots and tests use them; wall-clock time is only for the project's own performance work.

A run's cycles are ``sum(count[event] * cost[event])`` over the events the CPU counted:

* every retired instruction costs its base cycles from :data:`kernel_sim.isa.INSTRUCTIONS`;
* a TLB miss costs ``tlb_miss`` plus ``walk_ref`` for every page-table entry the walk reads;
* delivering a trap or interrupt (vector fetch and five-word frame push) costs ``trap``;
* every tick the CPU sleeps in HLT waiting for the timer costs ``idle_tick``;
* every sector the block device copies costs ``blk_sector`` (the device is synchronous).

**All numbers here are model assumptions**, chosen for plausible *relative* sizes on a simple
in-order core (a walk reference costs about as much as a cache-missing load; delivering a trap
costs a few dozen cycles, as a ring switch through an interrupt gate does), not measurements of
any real processor.  Later parts of the course add monitor costs (VM exits, callouts, hypercalls)
with per-generation presets, each with its source or marked as an assumption.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from . import isa
from .state import K_BLK_SECTOR, K_IDLE_TICK, K_TLB_MISS, K_TRAP, K_WALK_REF, NUM_COSTS

#: Extra costs in simulated cycles (model assumptions, see the module docstring).
NATIVE_EXTRAS: Dict[str, int] = {
    "tlb_miss": 10,    # assumption: fixed overhead of starting a hardware walk
    "walk_ref": 20,    # assumption: one page-table entry read, about an L2-hitting load
    "trap": 50,        # assumption: vector fetch + frame push + ring switch
    "idle_tick": 1,    # one tick asleep in HLT costs one cycle of wall-clock time
    "blk_sector": 128,  # assumption: the CPU waits while the device copies 128 words (one per cycle)
}
_EXTRA_INDEX = {"tlb_miss": K_TLB_MISS, "walk_ref": K_WALK_REF, "trap": K_TRAP,
                "idle_tick": K_IDLE_TICK, "blk_sector": K_BLK_SECTOR}


def cost_array(overrides: Optional[Dict[str, int]] = None) -> np.ndarray:
    """The int64[288] cost table the CPU kernel reads.

    ``overrides`` may name any extra (``tlb_miss``, ``walk_ref``, ``trap``, ``idle_tick``) or any
    mnemonic (``"DIV": 40``).  Unknown names and negative costs are refused.
    """
    costs = np.zeros(NUM_COSTS, dtype=np.int64)
    costs[:256] = isa.cost_table()
    values = dict(NATIVE_EXTRAS)
    for name, value in (overrides or {}).items():
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"cost {name!r} must be a non-negative integer, got {value!r}")
        if name in _EXTRA_INDEX:
            values[name] = int(value)
        elif name.upper() in isa.BY_MNEMONIC:
            costs[isa.BY_MNEMONIC[name.upper()].opcode] = int(value)
        else:
            known = ", ".join(sorted(_EXTRA_INDEX))
            raise ValueError(f"unknown cost {name!r}: use one of {known} or a mnemonic")
    for name, idx in _EXTRA_INDEX.items():
        costs[idx] = values[name]
    return costs
