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


# ================================================================================================
# Monitor costs: what each virtualization event costs, by CPU generation
# ================================================================================================
#: The CPU-generation presets.  ``years`` and ``examples`` are facts (see the course's sources);
#: the cycle numbers below are **model assumptions** unless a comment gives a source.  What is
#: documented is the *trend*: VM-exit latency fell by several times from the first VT-x
#: processors (NetBurst) through Core to Nehalem and later (VMware performance blog 2009; Agesen
#: et al., USENIX ATC 2012); Nehalem added EPT and VPID.
CPU_PRESETS: Dict[str, Dict[str, object]] = {
    "first-vtx": {"years": "2005-06", "examples": "Pentium 4 / Pentium D (NetBurst: Prescott, "
                  "Cedar Mill)", "ept": False, "vpid": False},
    "nehalem": {"years": "2008-09", "examples": "Core i7 (Nehalem): first with EPT and VPID",
                "ept": True, "vpid": True},
    "modern": {"years": "2015 and later", "examples": "recent Intel and AMD cores",
               "ept": True, "vpid": True},
}

#: Cost of each monitor event in simulated cycles, per preset.  ALL are model assumptions chosen
#: for plausible relative sizes (a software trap round trip costs hundreds of cycles, a VM exit
#: on the first VT-x generation thousands); none is a measurement.  Names are stable: monitors
#: charge them by name.
_MONITOR_COSTS: Dict[str, Dict[str, int]] = {
    # entering the monitor through a hardware trap (fault delivery + saving guest state) and
    # going back (restoring state + IRET).  NetBurst's long pipeline made faults expensive.
    "monitor_entry":   {"first-vtx": 600, "nehalem": 250, "modern": 150},
    "monitor_return":  {"first-vtx": 400, "nehalem": 200, "modern": 120},
    # decoding and emulating one privileged instruction against the virtual CPU
    "emulate":         {"first-vtx": 200, "nehalem": 150, "modern": 120},
    # building a virtual trap frame and sending the guest to its own handler
    "reflect":         {"first-vtx": 150, "nehalem": 120, "modern": 100},
    # shadow paging: fill one shadow entry after walking the guest's table (per walk, plus
    # walk_ref per guest entry read), emulate one write to a write-protected guest page table,
    # switch shadow roots (cached / built from scratch)
    "shadow_fill":     {"first-vtx": 300, "nehalem": 250, "modern": 200},
    "shadow_pt_write": {"first-vtx": 400, "nehalem": 300, "modern": 250},
    "shadow_root_hit": {"first-vtx": 100, "nehalem": 80, "modern": 60},
    "shadow_root_new": {"first-vtx": 2000, "nehalem": 1600, "modern": 1200},
    # binary translation: a callout is a call into the monitor inside the same address space
    # (no hardware trap, as in VMware's translator); translating costs per guest instruction
    "callout":         {"first-vtx": 60, "nehalem": 40, "modern": 30},
    "translate":       {"first-vtx": 250, "nehalem": 200, "modern": 150},
    "tc_lookup":       {"first-vtx": 30, "nehalem": 20, "modern": 15},
    "tc_invalidate":   {"first-vtx": 500, "nehalem": 400, "modern": 300},
    # paravirtualization: a hypercall is a deliberate trap into the hypervisor; each page-table
    # update in a batch is validated
    "hypercall":       {"first-vtx": 700, "nehalem": 350, "modern": 250},
    "hypercall_pte":   {"first-vtx": 60, "nehalem": 50, "modern": 40},
    # pure emulation (Bochs-style interpreter / QEMU-style translation blocks).  Calibrated only
    # so that the *ratios* resemble Bellard (2005): translated code a few times slower than
    # native, an interpreter tens of times slower.
    "emu_dispatch":    {"first-vtx": 30, "nehalem": 30, "modern": 30},
    "emu_tb_insn":     {"first-vtx": 3, "nehalem": 3, "modern": 3},
    "emu_tb_enter":    {"first-vtx": 12, "nehalem": 12, "modern": 12},
    "emu_translate":   {"first-vtx": 200, "nehalem": 200, "modern": 200},
    "emu_soft_tlb_hit": {"first-vtx": 4, "nehalem": 4, "modern": 4},
    "emu_soft_tlb_miss": {"first-vtx": 60, "nehalem": 60, "modern": 60},
    "emu_device":      {"first-vtx": 400, "nehalem": 400, "modern": 400},
    # hardware assist: one VM exit + VM entry round trip (falls by several times across
    # generations: the trend is documented, these values are assumptions)
    "vm_exit":         {"first-vtx": 2000, "nehalem": 900, "modern": 500},
    # nested paging: handling one EPT violation (find the guest page, map it in the EPT; the
    # first generation had no EPT, the value is never charged there)
    "ept_violation":   {"first-vtx": 600, "nehalem": 500, "modern": 400},
    # devices: emulating one port access in the monitor (decode, device model)
    "device_io":       {"first-vtx": 300, "nehalem": 250, "modern": 200},
}


def cpu_presets():
    """Names of the CPU-generation presets, oldest first."""
    return list(CPU_PRESETS)


def technique_costs(cpu: str = "modern", overrides: Optional[Dict[str, int]] = None
                    ) -> Dict[str, int]:
    """Named monitor costs (simulated cycles) for one CPU preset, plus the native extras.

    Unknown presets or cost names and negative values are refused with a message.
    """
    if cpu not in CPU_PRESETS:
        import difflib
        close = difflib.get_close_matches(str(cpu), CPU_PRESETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown CPU preset {cpu!r}{hint}; choose one of "
                         f"{', '.join(CPU_PRESETS)}")
    table = {name: by_cpu[cpu] for name, by_cpu in _MONITOR_COSTS.items()}
    table.update(NATIVE_EXTRAS)
    for name, value in (overrides or {}).items():
        if name not in table:
            raise ValueError(f"unknown monitor cost {name!r}; known: {', '.join(sorted(table))}")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"cost {name!r} must be a non-negative integer, got {value!r}")
        table[name] = int(value)
    return table
