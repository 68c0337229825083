"""What a run returns: counts, cycles, console output, and digests of the guest's state.

A :class:`Result` is a plain snapshot: it holds numbers and strings, not the machine, so it can be
kept, compared, turned into a dict (``as_dict``) or JSON, printed (``text``) or shown as an HTML
table in a notebook.  Counts are cumulative since the program was loaded.

The two digests make "the same behaviour" checkable in one comparison:

* ``state_digest`` -- everything the guest *operating system* could observe: the registers, pc,
  privilege level and interrupt flag, the control registers, the tick counter and timer, all of
  guest-physical memory, the disk, and the console.  Never the TLB, the event counters or anything that
  belongs to a monitor.  Two techniques that virtualize correctly leave the same state digest.
* ``user_digest`` -- only what *user programs* can observe: the console; the memory ring 3 can
  read in the current address space (page by page, keyed by virtual address); and the registers
  if the machine stopped in ring 3.  Kernels may differ (a paravirtual kernel is a different
  program) and still give the same user digest.
* ``disk_digest`` -- only the guest's disk (what survives the run): the same under every
  technique that virtualizes the block device correctly, whatever the kernel.

:data:`HOP_KINDS` is the one vocabulary of the steps a request takes through the system (a VM
exit, a hypercall, a callout, ...): monitors declare which kind each of their event reasons is
(:meth:`kernel_sim.monitors.base.Monitor.event_kind`), and the results contract of
:mod:`kernel_sim.experiments` (:func:`~kernel_sim.experiments.contract`) counts events and
draws paths with it.
"""
from __future__ import annotations

import hashlib
import html
import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import isa
from .state import (C_CYCLES, C_STOP_ERROR, C_STOP_REASON, C_STOP_VECTOR, EV_OP_BASE,
                    EV_VECTOR_BASE, EVENT_NAMES, STOP_NAMES)


def _digest(parts) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


def state_digest(machine) -> str:
    """Digest of all guest-visible architectural state (see the module docstring)."""
    arch = machine.architectural_state()
    return _digest([machine.regs.astype(np.int64), sorted(arch.items()),
                    machine.guest_memory(), machine.guest_disk(), machine.console_bytes()])


def disk_digest(machine) -> str:
    """Digest of the guest's disk alone (see the module docstring)."""
    return _digest([machine.guest_disk()])


def user_digest(machine) -> str:
    """Digest of what user programs can observe (see the module docstring)."""
    parts: List = [machine.console_bytes()]
    for va, words in machine.user_pages():
        parts += [va, words]
    if machine.cpl == 3:
        parts += [machine.regs.astype(np.int64), machine.pc]
    return _digest(parts)


#: The kinds of step a request takes (the ``kind`` of a hop in a result's ``path``, and what a
#: monitor declares each of its events to be): one vocabulary for every experiment.
HOP_KINDS = ("exit", "hypercall", "callout", "trap", "event", "world_switch", "mode_switch",
             "ring_copy", "grant_map", "dma", "device_access", "interrupt")

#: the stops that name a trap (the result then says which vector and error code)
TRAPPED_STOPS = ("unhandled_trap", "trap_exit", "triple_fault")


def counter_dicts(counters) -> Tuple[Dict[str, int], Dict[str, int], Dict[str, int]]:
    """Turn a ``counters`` array (the layout of :mod:`kernel_sim.state`) into the three
    dictionaries of a result: ``events`` (every named event, by name), ``traps`` (deliveries
    by vector name, e.g. ``"syscall"``; vectors never delivered are left out) and ``opcodes``
    (retired instructions by mnemonic; opcodes never retired are left out).

    The one place counters become dictionaries: the bare machine (:meth:`Result.from_machine`)
    and every technique (:meth:`kernel_sim.monitors.base.Monitor.result`) go through it, so a
    count means the same thing in every result.
    """
    c = np.asarray(counters)
    events = {name: int(c[i]) for i, name in enumerate(EVENT_NAMES)}
    vectors = c[EV_VECTOR_BASE:EV_VECTOR_BASE + 256]
    traps = {isa.VECTOR_KEYS.get(int(v), f"vector_{int(v)}"): int(vectors[v])
             for v in np.nonzero(vectors)[0]}
    ops = c[EV_OP_BASE:EV_OP_BASE + 256]
    opcodes = {}
    for op in np.nonzero(ops)[0]:
        ins = isa.BY_OPCODE.get(int(op))
        opcodes[ins.mnemonic if ins else f"0x{int(op):02x}"] = int(ops[op])
    return events, traps, opcodes


@dataclass
class Result:
    """The outcome of a run (cumulative since the program was loaded)."""

    stop: str
    pc: int
    cpl: int
    instructions: int
    cycles: int
    events: Dict[str, int]
    traps: Dict[str, int]
    opcodes: Dict[str, int]
    console: str
    state_digest: str
    user_digest: str
    stop_vector: int = -1
    stop_error: int = 0
    registers: List[int] = field(default_factory=list)
    disk_digest: str = ""

    @classmethod
    def from_machine(cls, m) -> "Result":
        events, traps, opcodes = counter_dicts(m.counters)
        stop = STOP_NAMES.get(int(m.ctrl[C_STOP_REASON]), "none")
        trapped = stop in TRAPPED_STOPS
        return cls(stop=stop, pc=m.pc, cpl=m.cpl, instructions=events["instructions"],
                   cycles=int(m.ctrl[C_CYCLES]), events=events, traps=traps, opcodes=opcodes,
                   console=m.console_bytes().decode("latin-1"),
                   state_digest=state_digest(m), user_digest=user_digest(m),
                   stop_vector=int(m.ctrl[C_STOP_VECTOR]) if trapped else -1,
                   stop_error=int(m.ctrl[C_STOP_ERROR]) if trapped else 0,
                   registers=[int(r) for r in m.regs], disk_digest=disk_digest(m))

    # ---- presentation -------------------------------------------------------------------------
    @property
    def stop_description(self) -> str:
        """The stop reason in words, naming the trap when there was one."""
        if self.stop_vector >= 0:
            name = isa.VECTOR_NAMES.get(self.stop_vector, f"vector {self.stop_vector}")
            return f"{self.stop}: {name} (error code {self.stop_error}) at pc 0x{self.pc:08x}"
        return f"{self.stop} at pc 0x{self.pc:08x}"

    def rows(self):
        """(event, count) rows with non-zero counts, for tables and plots."""
        rows = [(k, v) for k, v in self.events.items() if v]
        rows += [(f"trap: {k}", v) for k, v in self.traps.items()]
        return rows

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def text(self) -> str:
        """A readable plain-text report."""
        lines = [f"stopped: {self.stop_description}",
                 f"instructions: {self.instructions:,}    simulated cycles: {self.cycles:,}    "
                 f"ring at stop: {self.cpl}"]
        if self.console:
            lines.append("console:")
            lines += ["  | " + line for line in self.console.rstrip("\n").split("\n")]
        lines.append(f"{'event':<28}{'count':>14}")
        for name, value in self.rows():
            lines.append(f"{name:<28}{value:>14,}")
        lines.append(f"state digest: {self.state_digest}")
        lines.append(f"user digest:  {self.user_digest}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        esc = html.escape
        body = "".join(f"<tr><td>{esc(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
                       for k, v in self.rows())
        console = (f"<pre style='margin:0'>{esc(self.console)}</pre>" if self.console
                   else "<i>(empty)</i>")
        return (f"<div><b>stopped:</b> {esc(self.stop_description)}<br>"
                f"<b>instructions:</b> {self.instructions:,} &nbsp; "
                f"<b>simulated cycles:</b> {self.cycles:,}<br><b>console:</b> {console}"
                f"<table><caption>Events counted in this run</caption>"
                f"<thead><tr><th>event</th><th>count</th></tr></thead><tbody>{body}</tbody>"
                f"</table><small>state digest {self.state_digest} · user digest "
                f"{self.user_digest}</small></div>")


@dataclass
class TechniqueResult(Result):
    """A :class:`Result` of a guest run under a virtualization technique.

    Adds what the monitor counted: ``monitor_events`` (reason -> count, e.g. ``"emulate:cli"``),
    ``event_cycles`` (reason -> simulated cycles spent handling those events), and
    ``cycles_by_category`` (``guest``, ``transitions``, ``emulation``, ``memory``, ``devices``;
    they sum to ``cycles``).  ``instructions`` counts *guest* instructions, as the guest would.
    """

    technique: str = "native"
    cpu: str = "modern"
    strict: bool = False
    monitor_events: Dict[str, int] = field(default_factory=dict)
    event_cycles: Dict[str, int] = field(default_factory=dict)
    cycles_by_category: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: hardware assist: ``(guest ticks, exit name, guest ring, guest pc)`` of the first VM exits,
    #: in order (the ring and pc the guest was at when it exited)
    exit_timeline: List[tuple] = field(default_factory=list)
    #: the monitor's events are VM exits (its class declares ``needs.vm_exits``): the tables
    #: then say "VM-EXIT", as ``perf kvm stat`` does
    vm_exits: bool = False

    @classmethod
    def from_view(cls, view, counters, *, stop: str, technique: str, cpu: str, strict: bool,
                  monitor_events: Dict[str, int], event_cycles: Dict[str, int],
                  cycles_by_category: Dict[str, int], stop_vector: int = -1,
                  stop_error: int = 0, notes: Optional[List[str]] = None,
                  exit_timeline: Optional[List[tuple]] = None,
                  vm_exits: bool = False) -> "TechniqueResult":
        """A technique's result: the guest's state read through ``view`` (a machine or a
        :class:`~kernel_sim.monitors.base.GuestView`), the guest-visible ``counters`` (turned
        into events, traps and opcodes by :func:`counter_dicts`) and what the monitor counted.
        Monitors call it from :meth:`kernel_sim.monitors.base.Monitor.result` only."""
        events, traps, opcodes = counter_dicts(counters)
        trapped = stop in TRAPPED_STOPS
        return cls(stop=stop, pc=int(view.pc), cpl=int(view.cpl),
                   instructions=events["instructions"],
                   cycles=int(sum(cycles_by_category.values())), events=events,
                   traps=traps, opcodes=opcodes,
                   console=view.console_bytes().decode("latin-1"),
                   state_digest=state_digest(view), user_digest=user_digest(view),
                   stop_vector=stop_vector if trapped else -1,
                   stop_error=stop_error if trapped else 0,
                   registers=[int(r) for r in view.regs], disk_digest=disk_digest(view),
                   technique=technique, cpu=cpu,
                   strict=strict, monitor_events=dict(sorted(monitor_events.items())),
                   event_cycles=dict(sorted(event_cycles.items())),
                   cycles_by_category=dict(cycles_by_category), notes=list(notes or []),
                   exit_timeline=list(exit_timeline or []), vm_exits=bool(vm_exits))

    def exit_table_rows(self):
        """Rows of the ``perf kvm stat``-style table: (event, samples, samples %, time %, avg).

        ``time %`` is the share of the cycles spent handling events, ``avg`` the average
        simulated cycles per event.  Sorted by samples, most frequent first.
        """
        total = sum(self.monitor_events.values())
        spent = sum(self.event_cycles.values())
        rows = []
        for name, n in sorted(self.monitor_events.items(), key=lambda kv: (-kv[1], kv[0])):
            cyc = self.event_cycles.get(name, 0)
            rows.append((name, n, 100.0 * n / total if total else 0.0,
                         100.0 * cyc / spent if spent else 0.0, cyc / n if n else 0.0))
        return rows

    def exit_table(self) -> str:
        """The events the monitor handled, as ``perf kvm stat report`` prints VM exits."""
        rows = self.exit_table_rows()
        head = "VM-EXIT" if self.vm_exits else "EVENT"
        width = max([len(head)] + [len(r[0]) for r in rows])
        lines = [f"Analyze events for technique {self.technique} (cpu preset {self.cpu}):", "",
                 f"{head:>{width}}  {'Samples':>9}  {'Samples%':>8}  {'Time%':>7}  "
                 f"{'Avg cycles':>10}"]
        for name, n, sp, tp, avg in rows:
            lines.append(f"{name:>{width}}  {n:>9,}  {sp:>7.2f}%  {tp:>6.2f}%  {avg:>10.1f}")
        lines.append("")
        lines.append(f"Total Samples:{sum(r[1] for r in rows)}, Total events handled cycles:"
                     f"{sum(self.event_cycles.values())}.")
        return "\n".join(lines)

    def exit_table_html(self) -> str:
        esc = html.escape
        body = "".join(
            f"<tr><td>{esc(name)}</td><td style='text-align:right'>{n:,}</td>"
            f"<td style='text-align:right'>{sp:.2f}%</td><td style='text-align:right'>"
            f"{tp:.2f}%</td><td style='text-align:right'>{avg:.1f}</td></tr>"
            for name, n, sp, tp, avg in self.exit_table_rows())
        return (f"<table><caption>Events handled by the {esc(self.technique)} monitor "
                f"(cpu preset {esc(self.cpu)}; cycles are simulated)</caption><thead><tr>"
                f"<th>{'VM-EXIT' if self.vm_exits else 'event'}</th>"
                "<th>Samples</th><th>Samples%</th><th>Time%</th>"
                f"<th>Avg cycles</th></tr></thead><tbody>{body}</tbody></table>")

    def text(self) -> str:
        head = [f"technique: {self.technique}   cpu preset: {self.cpu}   "
                f"strict ISA: {'yes' if self.strict else 'no'}"]
        head += [f"note: {n}" for n in self.notes]
        cats = "  ".join(f"{k} {v:,}" for k, v in self.cycles_by_category.items() if v)
        return "\n".join(head + [super().text(), f"cycles by category: {cats}",
                                 self.exit_table()])

    def _repr_html_(self) -> str:
        return super()._repr_html_() + self.exit_table_html()
