"""Popek and Goldberg on the toy machine: when does trap-and-emulate work?  (notebook 03)

Popek and Goldberg (1974) asked what an instruction set must offer so that a *virtual machine
monitor* (VMM) can be built by the simplest recipe: run the guest deprivileged, let everything
that matters trap, and emulate it.  A VMM must give three guarantees:

* **equivalence** (等价性) -- a program under the VMM behaves exactly as on the bare machine
  (apart from timing and the amount of resources);
* **resource control** (资源控制) -- the guest cannot touch resources the VMM did not give it;
* **efficiency** (效率) -- the great majority of the guest's instructions run directly on the
  processor, without the VMM.

They sort instructions by what they do with the machine's control state:

* *privileged* (特权指令): traps when executed outside the most privileged mode, and runs
  there;
* *sensitive* (敏感指令): *control-sensitive* if it can change the control state (mode,
  interrupt flag, page-table root, ...), *behaviour-sensitive* if what it does or returns
  depends on that state (``GETCPL`` returns the ring it runs in);
* *innocuous*: neither.

**Theorem 1.**  A VMM with all three properties can be built if the sensitive instructions are a
subset of the privileged ones.  Then every sensitive act of a deprivileged guest traps, and the
VMM can emulate it against the guest's *virtual* state.

This module holds what notebook 03 runs, so that the notebook's cells stay short:

* :func:`class_table` / :func:`class_table_html` -- the toy ISA's instructions by class, read
  from :data:`kernel_sim.isa.INSTRUCTIONS`, with whether each one traps outside ring 0 on the
  default and on the strict ISA;
* :func:`theorem1` -- the sets Theorem 1 compares, and whether it holds;
* :data:`DEMO_SOURCE` / :func:`demo_image` -- a tiny kernel that saves its interrupt flag with
  ``pushf; cli; ...; popf`` and then sleeps until three timer interrupts have come;
* :func:`compare_isas` / :func:`compare_workload` -- one guest run natively and under
  ``trap_emulate`` on the non-strict and the strict ISA, with digests, notes and the events that
  differ;
* :data:`SMALL_KERNELS` -- four small kernels for predicting equivalence (exercise 03.3);
* :func:`events_per_operation` -- what one more loop iteration of a workload costs in events;
* :data:`ROBIN_IRVINE` -- the Pentium instructions Robin and Irvine (2000) found sensitive but
  unprivileged, with the toy ISA's counterparts.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .. import isa

__all__ = ["PROPERTIES", "class_table", "class_table_html", "Theorem1", "theorem1",
           "DEMO_SOURCE", "demo_image", "IsaComparison", "compare_isas", "compare_workload",
           "SMALL_KERNELS", "small_kernel_image", "equivalent_without_strict",
           "events_per_operation", "PentiumInstruction", "ROBIN_IRVINE",
           "ROBIN_IRVINE_PAPER_COUNT", "robin_irvine_rows", "robin_irvine_html"]

#: Popek and Goldberg's three properties of a VMM: (English, 中文, what it asks).
PROPERTIES: tuple[tuple[str, str, str], ...] = (
    ("equivalence", "等价性",
     "a program run under the VMM behaves exactly as on the bare machine, except for timing "
     "and the amount of resources available"),
    ("resource control", "资源控制",
     "the VMM stays in complete control of the machine's resources: a guest gets only what it "
     "was given and cannot take the rest"),
    ("efficiency", "效率",
     "the great majority of the guest's instructions run directly on the "
     "processor, without the VMM stepping in"),
)

# ---------------------------------------------------------------------------------------------
# The class table
# ---------------------------------------------------------------------------------------------
_CLASS_LABELS = {isa.INNOCUOUS: "innocuous", isa.PRIVILEGED: "privileged",
                 isa.SENSITIVE: "sensitive, unprivileged", isa.TRAPPING: "always traps",
                 isa.MONITOR: "monitor only (#UD on the bare machine)"}


def _traps_outside_ring0(ins: isa.Instruction, strict: bool) -> bool:
    """Does ``ins`` trap when a program runs it in ring 1, 2 or 3?

    Privileged instructions raise #GP; SYSCALL traps by design in every ring; the monitor
    opcodes raise #UD on the bare machine; the sensitive-but-unprivileged ones trap only on the
    strict ISA; innocuous instructions never trap for being out of ring 0.
    """
    if ins.cls in (isa.PRIVILEGED, isa.TRAPPING, isa.MONITOR):
        return True
    return ins.cls == isa.SENSITIVE and strict


def class_table() -> list[dict]:
    """The toy ISA's instructions by Popek-Goldberg class, one dict per instruction.

    Built from :func:`kernel_sim.isa.instruction_classes` (so it cannot drift from the ISA) plus
    two columns: ``traps`` and ``traps_strict`` -- whether the instruction traps outside ring 0
    on the default and on the strict ISA.  ``sensitivity`` is ``"control"``, ``"behaviour"`` or
    ``"-"``.
    """
    rows = []
    for row in isa.instruction_classes():
        ins = isa.BY_MNEMONIC[row["mnemonic"]]
        rows.append(dict(mnemonic=row["mnemonic"], cls=row["cls"],
                         label=_CLASS_LABELS[row["cls"]], sensitivity=row["sensitivity"],
                         privileged=row["privileged"],
                         traps=_traps_outside_ring0(ins, strict=False),
                         traps_strict=_traps_outside_ring0(ins, strict=True),
                         summary=row["summary"]))
    return rows


def class_table_html(collapse_innocuous: bool = True) -> str:
    """The class table as HTML; innocuous instructions in one row unless told otherwise.

    A row is marked in bold when its instruction is sensitive but does *not* trap outside ring 0
    on the default ISA: the violations of Theorem 1.
    """
    esc = html.escape
    rows = class_table()
    body = []
    yes_no = {True: "yes", False: "<b>no</b>"}
    if collapse_innocuous:
        names = [r["mnemonic"] for r in rows if r["cls"] == isa.INNOCUOUS]
        body.append(f"<tr><td>{esc(', '.join(names))}</td><td>innocuous</td><td>-</td>"
                    f"<td>no</td><td>no</td><td>moves, arithmetic, memory, stack, "
                    f"branches ({len(names)} instructions)</td></tr>")
        rows = [r for r in rows if r["cls"] != isa.INNOCUOUS]
    for r in rows:
        sensitive = r["sensitivity"] != "-"
        bad = sensitive and not r["traps"]
        name = f"<b>{esc(r['mnemonic'])}</b>" if bad else esc(r["mnemonic"])
        traps = yes_no[r["traps"]] if sensitive else ("yes" if r["traps"] else "no")
        body.append(f"<tr><td>{name}</td><td>{esc(r['label'])}</td>"
                    f"<td>{esc(r['sensitivity'])}</td><td>{traps}</td>"
                    f"<td>{'yes' if r['traps_strict'] else 'no'}</td>"
                    f"<td>{esc(r['summary'])}</td></tr>")
    return ("<table><caption>The toy ISA by Popek-Goldberg class (from kernel_sim.isa); "
            "bold: sensitive but no trap on the default ISA</caption><thead><tr>"
            "<th>instruction</th><th>class</th><th>sensitivity</th>"
            "<th>traps outside ring 0 (default ISA)</th><th>... (strict ISA)</th>"
            "<th>what it does</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>")


# ---------------------------------------------------------------------------------------------
# Theorem 1
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Theorem1:
    """The two sets Theorem 1 compares on one ISA, and the verdict.

    ``sensitive``: every sensitive instruction (control- or behaviour-sensitive);
    ``trapping``: every instruction that traps outside ring 0; ``violations``: sensitive ones
    that do not trap (sorted).  The theorem's condition holds when there are none.
    """

    strict: bool
    sensitive: tuple[str, ...]
    trapping: tuple[str, ...]
    violations: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return not self.violations

    def text(self) -> str:
        isa_name = "strict ISA" if self.strict else "default ISA"
        if self.holds:
            return (f"{isa_name}: all {len(self.sensitive)} sensitive instructions trap outside "
                    f"ring 0 -- sensitive ⊆ privileged holds, trap-and-emulate can work")
        return (f"{isa_name}: {len(self.violations)} of {len(self.sensitive)} sensitive "
                f"instructions do not trap outside ring 0 ({', '.join(self.violations)}) -- "
                f"sensitive ⊆ privileged fails")

    def __repr__(self) -> str:
        return self.text()


def theorem1(strict: bool = False) -> Theorem1:
    """Check Popek and Goldberg's Theorem 1 on the toy ISA (default or strict).

    The machine's own SYSCALL and the monitor opcodes count as trapping: a monitor sees them
    anyway.  The answer agrees with :func:`kernel_sim.isa.popek_goldberg_violations`.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    rows = class_table()
    key = "traps_strict" if strict else "traps"
    sensitive = tuple(r["mnemonic"] for r in rows if r["sensitivity"] != "-")
    trapping = tuple(r["mnemonic"] for r in rows if r[key])
    violations = tuple(sorted(m for m in sensitive if m not in trapping))
    return Theorem1(strict, sensitive, trapping, violations)


# ---------------------------------------------------------------------------------------------
# The demonstration kernel
# ---------------------------------------------------------------------------------------------
#: A bare-metal kernel that waits for three timer interrupts.  First it prints the ring it runs
#: in ('0' on the bare machine), then it saves its flags, masks interrupts for a critical
#: section and restores the flags with POPF -- Linux's local_irq_save/restore.  Then it starts
#: the timer and sleeps with HLT until three ticks have arrived, printing a 'T' for each.
DEMO_SOURCE = """\
; demo: save and restore the interrupt flag, then wait for three timer interrupts
VECTORS = 0x1000
        li   r1, VECTORS
        li   r2, on_timer
        st   r2, [r1 + 4 * 32]      ; vector 32 = the timer interrupt
        wrcr tvb, r1                ; install the trap-vector table
        li   sp, 0x8000
        getcpl r3                   ; which ring am I in?  (behaviour-sensitive)
        addi r3, r3, '0'
        out  console, r3            ; print it as a digit
        movi r6, 0                  ; timer interrupts seen so far
        sti                         ; interrupts on
        pushf                       ; save FLAGS (IF = 1) ...
        cli                         ; ... mask interrupts ...
        addi r7, r7, 1              ; ... a critical section ...
        popf                        ; ... and restore IF = 1  (control-sensitive)
        movi r1, 100
        out  timer, r1              ; a timer interrupt every 100 ticks
wait:   hlt                         ; sleep until the next interrupt
        movi r5, 3
        bne  r6, r5, wait           ; until three have come
        movi r4, '.'
        out  console, r4
        cli
        hlt                         ; interrupts off: HLT stops the machine
on_timer:
        addi r6, r6, 1
        movi r4, 'T'
        out  console, r4
        iret
"""

#: RAM of the small hand-written guests (the monitors need no more)
SMALL_RAM = 64 << 10
#: instruction budget of one small-guest run (they stop long before)
SMALL_BUDGET = 100_000


def _image(source: str, filename: str):
    from ..asm import assemble
    from ..monitors import ProgramImage
    return ProgramImage.from_program(assemble(source, filename=filename), ram_size=SMALL_RAM)


def demo_image():
    """The demonstration kernel (:data:`DEMO_SOURCE`) as a guest image for the monitors."""
    return _image(DEMO_SOURCE, "demo.s")


# ---------------------------------------------------------------------------------------------
# One guest, native and under trap-and-emulate on both ISAs
# ---------------------------------------------------------------------------------------------
@dataclass
class IsaComparison:
    """One guest run four times: natively and under ``trap_emulate``, each on both ISAs.

    ``native`` / ``native_strict`` are the bare machine on the default and the strict ISA;
    ``loose`` / ``strict`` are ``trap_emulate`` on the default (non-strict) and the strict ISA.
    Each ``trap_emulate`` run is compared with native on the *same* ISA.
    """

    name: str
    native: object
    native_strict: object
    loose: object
    strict: object

    def runs(self):
        """((label, technique result, native result on the same ISA), ...) for both ISAs."""
        return (("non-strict ISA", self.loose, self.native),
                ("strict ISA", self.strict, self.native_strict))

    def equivalent(self, strict: bool) -> bool:
        """Did trap_emulate on that ISA leave exactly the native guest state (state digest)?"""
        te, nat = (self.strict, self.native_strict) if strict else (self.loose, self.native)
        return te.state_digest == nat.state_digest

    def user_equivalent(self, strict: bool) -> bool:
        """Did user programs see the same thing as natively (user digest)?"""
        te, nat = (self.strict, self.native_strict) if strict else (self.loose, self.native)
        return te.user_digest == nat.user_digest

    def event_differences(self) -> list[tuple[str, int, int]]:
        """(reason, count on the non-strict ISA, count on the strict ISA) where they differ."""
        a, b = self.loose.monitor_events, self.strict.monitor_events
        return [(k, a.get(k, 0), b.get(k, 0)) for k in sorted(set(a) | set(b))
                if a.get(k, 0) != b.get(k, 0)]

    def rows(self) -> list[dict]:
        """One row per run: what it printed, how it stopped, whether it matched native."""
        out = [dict(run="native", console=self.native.console, stop=self.native.stop,
                    state_same="-", user_same="-", cycles=self.native.cycles, notes=0)]
        for label, te, nat in self.runs():
            out.append(dict(run=f"trap_emulate, {label}", console=te.console, stop=te.stop,
                            state_same=te.state_digest == nat.state_digest,
                            user_same=te.user_digest == nat.user_digest, cycles=te.cycles,
                            notes=len(te.notes)))
        return out

    def _repr_html_(self) -> str:
        esc = html.escape

        def fmt(v):
            return "yes" if v is True else "<b>NO</b>" if v is False else esc(str(v))
        console = max(len(r["console"]) for r in self.rows())
        body = "".join(
            f"<tr><td>{esc(r['run'])}</td>"
            + (f"<td><code>{esc(r['console'][-40:])}</code></td>" if console <= 40 else "")
            + f"<td>{esc(r['stop'])}</td><td>{fmt(r['state_same'])}</td>"
            f"<td>{fmt(r['user_same'])}</td><td style='text-align:right'>{r['cycles']:,}</td></tr>"
            for r in self.rows())
        head = "<th>console</th>" if console <= 40 else ""
        diffs = "".join(f"<tr><td>{esc(k)}</td><td style='text-align:right'>{a:,}</td>"
                        f"<td style='text-align:right'>{b:,}</td></tr>"
                        for k, a, b in self.event_differences())
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.loose.notes) or "<li>(none)</li>"
        return (f"<div><table><caption>{esc(self.name)}: native and trap_emulate on both ISAs"
                f"</caption><thead><tr><th>run</th>{head}<th>stop</th>"
                f"<th>guest state = native</th><th>user-visible = native</th>"
                f"<th>simulated cycles</th></tr></thead><tbody>{body}</tbody></table>"
                f"<p><b>Notes of the non-strict run:</b></p><ul>{notes}</ul>"
                f"<table><caption>Monitor events that differ between the ISAs</caption><thead>"
                f"<tr><th>reason</th><th>non-strict</th><th>strict</th></tr></thead><tbody>"
                f"{diffs or '<tr><td colspan=3>(none)</td></tr>'}</tbody></table></div>")


def compare_isas(image, name: str = "guest", count: int = SMALL_BUDGET, **settings
                 ) -> IsaComparison:
    """Run ``image`` natively and under ``trap_emulate``, on the default and the strict ISA.

    ``count`` is the instruction budget of each run; ``settings`` go to every monitor (e.g.
    ``cpu="first-vtx"``).  The runs are cached by :func:`kernel_sim.experiments.run_image`.
    """
    from ..experiments import run_image
    fields = {k: settings.pop(k) for k in ("cpu", "levels", "tlb_size") if k in settings}
    runs = {(tech, strict): run_image(image, tech, budget=count, strict=strict, knobs=settings,
                                      **fields)
            for tech in ("native", "trap_emulate") for strict in (False, True)}
    return IsaComparison(name, runs["native", False], runs["native", True],
                         runs["trap_emulate", False], runs["trap_emulate", True])


def compare_workload(workload: str, count: int | None = None, **settings) -> IsaComparison:
    """:func:`compare_isas` for a workload of the course's guest OS (loop count ``count``)."""
    from ..experiments import Config, image_of
    image = image_of(Config(workload, count=count))
    n = image.count
    return compare_isas(image, name=f"workload {workload} ({n} iterations)",
                        count=20_000_000, **settings)


# ---------------------------------------------------------------------------------------------
# Small kernels for predicting equivalence (exercise 03.3)
# ---------------------------------------------------------------------------------------------
_SMALL_TEMPLATE = """\
        li   r1, 0x1000
        li   r2, tick
        st   r2, [r1 + 4 * 32]
        wrcr tvb, r1
        li   sp, 0x8000
        sti
{body}
        movi r1, 100
        out  timer, r1
        movi r6, 0
wait:   hlt
        movi r5, 2
        bne  r6, r5, wait
        cli
        hlt
tick:   addi r6, r6, 1
        iret
"""

#: Four kernels that differ only in a few instructions run with interrupts on, before they
#: start the timer and sleep until two timer interrupts have come.  name -> those instructions.
SMALL_KERNELS: dict[str, str] = {
    "cli/sti": "        cli\n        addi r7, r7, 1\n        sti",
    "pushf/cli/popf": "        pushf\n        cli\n        addi r7, r7, 1\n        popf",
    "pushf/pop": "        pushf\n        pop  r8",
    "getcpl": "        getcpl r8",
}


def small_kernel_image(name: str):
    """The guest image of one of :data:`SMALL_KERNELS` (clear error for an unknown name)."""
    if name not in SMALL_KERNELS:
        raise ValueError(f"unknown small kernel {name!r}; known: {', '.join(SMALL_KERNELS)}")
    return _image(_SMALL_TEMPLATE.format(body=SMALL_KERNELS[name]), f"{name}.s")


def equivalent_without_strict(name: str) -> bool:
    """Does ``trap_emulate`` on the non-strict ISA leave the native state for that kernel?"""
    return compare_isas(small_kernel_image(name), name).equivalent(strict=False)


# ---------------------------------------------------------------------------------------------
# The price of a strict ISA: events per loop iteration
# ---------------------------------------------------------------------------------------------
def events_per_operation(workload: str, strict: bool = True, counts: Sequence[int] = (10, 20),
                         technique: str = "trap_emulate") -> dict[str, Fraction]:
    """Monitor events that ONE more loop iteration of ``workload`` adds, by reason.

    Runs the workload at two loop counts and divides the difference of each event count by the
    difference of the counts, so boot and shutdown cancel out.  Reasons whose count does not
    change are left out.  Values are exact fractions (an integer when the work per iteration is
    regular).
    """
    from ..experiments import result_of
    lo, hi = counts
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 < lo < hi):
        raise ValueError(f"counts must be two increasing positive integers, got {counts!r}")
    a, b = (result_of(workload, technique, count=c, strict=strict,
                      budget=20_000_000).monitor_events for c in (lo, hi))
    out = {}
    for k in sorted(set(a) | set(b)):
        d = b.get(k, 0) - a.get(k, 0)
        if d:
            out[k] = Fraction(d, hi - lo)
    return out


# ---------------------------------------------------------------------------------------------
# Robin and Irvine (2000): the Pentium's sensitive, unprivileged instructions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PentiumInstruction:
    """One row of Robin and Irvine's list: the x86 mnemonic, their group, what goes wrong for a
    deprivileged guest, and the toy ISA's counterpart (``"-"`` if it has none)."""

    mnemonic: str
    group: str
    problem: str
    toy: str = "-"


_REG = "sensitive register instruction"
_PROT = "protection system reference"

#: The instructions Robin and Irvine name, mnemonic by mnemonic (PUSH and POP of a segment
#: register are two rows, so the list has one row more than the paper's count).
ROBIN_IRVINE: tuple[PentiumInstruction, ...] = (
    PentiumInstruction("SGDT", _REG, "stores the GDT register: shows where the VMM put its "
                                     "global descriptor table"),
    PentiumInstruction("SIDT", _REG, "stores the IDT register: shows the VMM's interrupt table, "
                                     "not the guest's (the 'Red Pill' test)", "RDTVB"),
    PentiumInstruction("SLDT", _REG, "stores the LDT register selector"),
    PentiumInstruction("SMSW", _REG, "stores the machine status word (low bits of CR0) at any "
                                     "privilege level"),
    PentiumInstruction("PUSHF", _REG, "pushes the real flags, interrupt flag included",
                       "PUSHF"),
    PentiumInstruction("POPF", _REG, "outside ring 0 a change of the interrupt flag is silently "
                                     "ignored: no trap, wrong result", "POPF"),
    PentiumInstruction("LAR", _PROT, "reads a descriptor's access rights after a privilege "
                                     "check that depends on the current ring"),
    PentiumInstruction("LSL", _PROT, "reads a segment limit after the same ring-dependent "
                                     "check"),
    PentiumInstruction("VERR", _PROT, "tells whether a segment is readable from the current "
                                      "ring"),
    PentiumInstruction("VERW", _PROT, "tells whether a segment is writable from the current "
                                      "ring"),
    PentiumInstruction("POP (segment register)", _PROT, "loading a segment register checks "
                                                        "privileges against the current ring"),
    PentiumInstruction("PUSH (segment register)", _PROT, "pushing CS reveals the current ring "
                                                         "in the selector's low bits", "GETCPL"),
    PentiumInstruction("CALL (far)", _PROT, "far transfers check privileges against the "
                                            "current ring"),
    PentiumInstruction("JMP (far)", _PROT, "far transfers check privileges against the "
                                           "current ring"),
    PentiumInstruction("INT n", _PROT, "the gate's privilege check depends on the current "
                                       "ring"),
    PentiumInstruction("RET (far)", _PROT, "the return's privilege checks depend on the "
                                           "current ring"),
    PentiumInstruction("STR", _PROT, "stores the task register selector"),
    PentiumInstruction("MOV (segment registers)", _PROT, "reading CS or SS reveals the current "
                                                         "ring; loading one checks privileges",
                       "GETCPL"),
)
#: How many sensitive, unprivileged instructions the paper itself counts.
ROBIN_IRVINE_PAPER_COUNT = 17


def robin_irvine_rows() -> list[dict]:
    """:data:`ROBIN_IRVINE` as plain rows (one dict per instruction)."""
    return [dict(mnemonic=p.mnemonic, group=p.group, problem=p.problem, toy=p.toy)
            for p in ROBIN_IRVINE]


def robin_irvine_html() -> str:
    """Robin and Irvine's list as an HTML table, with the toy ISA's counterparts."""
    esc = html.escape
    body = "".join(f"<tr><td>{esc(p.mnemonic)}</td><td>{esc(p.group)}</td>"
                   f"<td>{esc(p.problem)}</td><td>{esc(p.toy)}</td></tr>" for p in ROBIN_IRVINE)
    return (f"<table><caption>Sensitive but unprivileged on the Pentium (Robin &amp; Irvine "
            f"2000): {len(ROBIN_IRVINE)} rows, {ROBIN_IRVINE_PAPER_COUNT} as the paper counts "
            f"them</caption><thead><tr><th>instruction</th><th>group</th><th>what a "
            f"deprivileged guest gets wrong</th><th>toy ISA</th></tr></thead><tbody>{body}"
            f"</tbody></table>")
