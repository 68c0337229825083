"""``native``: no monitor at all -- the guest operating system owns the bare machine.

This is the baseline every technique is compared with: the same image, booted on a machine with
exactly the guest's RAM and disk, the guest kernel in ring 0.  Nothing is intercepted, so the
monitor counts no events and every cycle is the guest's own (instructions, TLB misses, page
walks, trap deliveries, idle ticks, disk transfers).
"""
from __future__ import annotations

from ..results import Result, TechniqueResult
from .base import Monitor, native_machine


class Native(Monitor):
    name = "native"
    description = "no monitor: the guest kernel runs in ring 0 of the bare machine"

    def _boot(self) -> None:
        self.machine = native_machine(self.image, levels=self.levels, tlb_size=self.tlb_size,
                                      strict=self.strict, trace_size=self.trace_size)

    def _run(self, budget: int) -> None:
        self.raw = self.machine.run(count=budget)

    def view(self):
        return self.machine

    def result(self) -> TechniqueResult:
        raw: Result = self.raw
        self.cycles["guest"] = raw.cycles
        return TechniqueResult.from_view(
            self.machine, stop=raw.stop, instructions=raw.instructions, events=raw.events,
            traps=raw.traps, opcodes=raw.opcodes, technique=self.name, cpu=self.cpu,
            strict=self.strict, monitor_events={}, event_cycles={},
            cycles_by_category=self.cycles, stop_vector=raw.stop_vector,
            stop_error=raw.stop_error)
