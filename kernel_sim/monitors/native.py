"""``native``: no monitor at all -- the guest operating system owns the bare machine.

This is the baseline every technique is compared with: the same image, booted on a machine with
exactly the guest's RAM and disk, the guest kernel in ring 0.  Nothing is intercepted, so the
monitor counts no events and every cycle is the guest's own (instructions, TLB misses, page
walks, trap deliveries, idle ticks, disk transfers).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from ..state import C_CYCLES
from .base import Monitor, native_machine


class Native(Monitor):
    name = "native"
    description = "no monitor: the guest kernel runs in ring 0 of the bare machine"
    #: the guest's RAM *is* the machine's memory, from address 0: there is no host to share
    places_guest_in_host = False

    def _boot(self) -> None:
        self.machine = native_machine(self.image, levels=self.levels, tlb_size=self.tlb_size,
                                      strict=self.strict, trace_size=self.trace_size)

    def _run(self, budget: int) -> None:
        raw = self.machine.run(count=budget)
        self.stop, self.stop_vector, self.stop_error = raw.stop, raw.stop_vector, raw.stop_error

    def view(self):
        return self.machine

    def guest_counters(self) -> np.ndarray:
        return self.machine.counters

    def cpu_cycles(self) -> Dict[str, int]:
        return {"guest": int(self.machine.ctrl[C_CYCLES])}
