"""Protection rings, measured: run one user program in ring 0, 1, 2 or 3 and see what traps.

The experiment behind notebook 02 is a real mechanism, not a lookup table.  A small ring-0
*probe kernel* written in the toy assembly language (``guests/ring_probe.s``, shipped with the
package) boots the way every kernel does:

1. it fills a **trap-vector table** with the addresses of its handlers (#DE, #UD, #GP, #PF and the
   system-call vector 0x80) and installs it with ``WRCR tvb``;
2. it sets the **kernel stack pointer** ``KSP`` (x86: ``TSS.esp0``), the stack the CPU switches to
   when a trap arrives from rings 1..3;
3. it builds a **trap frame** by hand with ``ring = N`` and executes ``IRET``: the CPU "returns"
   into the user program in ring N.

Each fault handler counts the trap in kernel memory, logs the faulting pc, adds 4 to the saved pc
(skipping the instruction) and returns with ``IRET``, so the user program carries on and every
faulting instruction is seen.  The system-call handler implements ``exit`` (r0 = 0) and ``write``
(r0 = 1, r1 = address, r2 = length in words; see :data:`kernel_sim.isa.SYSCALLS`).

Use it like this::

    from kernel_sim.lessons.rings import probe, PROGRAMS
    p = probe("privileged mix", ring=3)
    p.traps          # {'#DE': 0, '#UD': 0, '#GP': 7, '#PF': 0, 'syscall': 1}  (from the CPU)
    p.kernel_traps   # the same numbers, read from the probe kernel's own counters in memory
    p.faults         # [Fault(pc=0x2008, instruction='cli', kind='#GP', line=...), ...]

:func:`syscall_path` single-steps one system call from ring 3 and records ring, pc and sp after
every instruction, for the drawn and counted system-call path of notebook 02.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Dict, List, Optional, Tuple

from .. import isa
from ..asm import AsmError, Program, assemble, disassemble_word
from ..machine import Machine
from ..results import Result
from ..state import C_CYCLES, C_TRACE_POS, TRACE_TRAP

# --------------------------------------------------------------------------------------------
# The probe kernel's layout (must match guests/ring_probe.s; checked when it is assembled)
# --------------------------------------------------------------------------------------------
PROBE_FILE = "ring_probe.s"
MEMORY_SIZE = 64 << 10          #: the probe machine's physical memory (64 KiB)
KCOUNT = 0x0800                 #: kernel's per-vector trap counters (256 words)
KLOG_N = 0x0C00                 #: number of faults the kernel has seen
KEXIT = 0x0C04                  #: exit status (0xffffffff until exit is called)
KLOG = 0x0C10                   #: log of (faulting pc, vector) pairs
KLOG_MAX = 64
USER_BASE = 0x2000              #: where the user program is placed
USER_STACK = 0x8000             #: top of the user stack
KSTACK = 0x10000                #: top of the kernel stack (the value of KSP)
DEFAULT_COUNT = 200_000         #: instruction budget of one probe run

#: Trap kinds shown in tables and charts, in this order: short name -> vector.
TRAP_KINDS: Dict[str, int] = {"#DE": isa.VEC_DE, "#UD": isa.VEC_UD, "#GP": isa.VEC_GP,
                              "#PF": isa.VEC_PF, "syscall": isa.VEC_SYSCALL}
KIND_BY_VECTOR = {v: k for k, v in TRAP_KINDS.items()}
FAULT_VECTORS = (isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF)

#: Appended after every user program: if it falls off its end, it exits with status 0.
EPILOGUE = """
; -- epilogue added by the probe: exit(0) if the program falls off its end
        movi r0, 0
        movi r1, 0
        syscall
"""

# --------------------------------------------------------------------------------------------
# Demo programs (user programs: they start at USER_BASE, in the ring the probe is asked for)
# --------------------------------------------------------------------------------------------
PROGRAMS: Dict[str, str] = {
    "privileged mix": """\
; Seven privileged instructions among ordinary ones.  In ring 0 they just work (and HLT stops
; the machine); in rings 1..3 each one raises #GP and the probe kernel skips it.
        movi r1, 'A'
        addi r2, r1, 1          ; innocuous ALU
        cli                     ; mask interrupts
        sti                     ; allow interrupts again
        in   r3, ticks          ; read the tick counter port
        out  console, r1        ; write 'A' straight to the console port
        wrcr scratch, r2        ; write a control register
        invlpg r1               ; drop a TLB entry
        add  r4, r1, r2         ; innocuous ALU
        hlt                     ; stop the CPU until an interrupt
        movi r0, 0              ; exit(0) -- reached only when HLT did not stop the machine
        movi r1, 0
        syscall
""",
    "system calls": """\
; Print "hi" the proper way: ask the kernel with a system call, then exit.
        movi r0, 1              ; system call 1 = write
        li   r1, message        ; r1 = address of the text
        movi r2, 3              ; r2 = length in words (one character per word)
        syscall                 ; trap to the kernel through vector 0x80
        movi r0, 0              ; system call 0 = exit
        movi r1, 0              ; exit status
        syscall
message: .string "hi\\n"
""",
    "sensitive but unprivileged": """\
; Four instructions that read or change control state -- yet do not trap outside ring 0.
        pushf                   ; push FLAGS: reveals the real interrupt flag
        pop  r3
        getcpl r4               ; r4 = the ring we run in
        rdtvb r5                ; r5 = where the kernel keeps its vector table
        movi r6, 0
        push r6
        popf                    ; try to clear IF: silently ignored outside ring 0
        addi r4, r4, '0'        ; print the ring GETCPL saw, as a digit
        li   r1, buffer
        st   r4, [r1]
        movi r2, 1
        movi r0, 1              ; write(buffer, 1)
        syscall
        movi r0, 0              ; exit(0)
        movi r1, 0
        syscall
buffer: .word 0
""",
    "divide by zero": """\
; Faults that have nothing to do with rings: they happen in every ring, ring 0 included.
        movi r1, 10
        movi r2, 0
        div  r3, r1, r2         ; 10 / 0 -> #DE
        mod  r4, r1, r2         ; 10 % 0 -> #DE
        movi r2, 3
        div  r3, r1, r2         ; 10 / 3 = 3, fine
        .word 0                 ; opcode 0x00 is invalid on purpose -> #UD
        movi r0, 0              ; exit(0)
        movi r1, 0
        syscall
""",
}


def guest_source(name: str) -> str:
    """The text of a guest assembly file in ``kernel_sim/guests/`` (e.g. ``"ring_probe.s"``)."""
    try:
        return resources.files("kernel_sim").joinpath("guests").joinpath(name).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"no guest file {name!r} in kernel_sim/guests") from None


def kernel_section(title: str) -> str:
    """One section of the probe kernel's source, e.g. ``kernel_section("boot")``.

    Sections start with a ``; ==== title ...`` line and run to the next one.
    """
    lines = guest_source(PROBE_FILE).splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("; ====")]
    for k, i in enumerate(starts):
        if lines[i][6:].strip().startswith(title):
            end = starts[k + 1] if k + 1 < len(starts) else len(lines)
            return "\n".join(lines[i:end]).rstrip() + "\n"
    names = [lines[i][6:].strip(" =") for i in starts]
    raise ValueError(f"no section {title!r} in {PROBE_FILE}; sections: {names}")


def _left(table_html: str) -> str:
    """Left-align the plain cells of an HTML table (notebook front ends right-align them)."""
    return (table_html.replace("<td>", "<td style='text-align:left'>")
            .replace("<th>", "<th style='text-align:left'>"))


def _check_ring(ring) -> int:
    if isinstance(ring, bool) or not isinstance(ring, int) or not 0 <= ring <= 3:
        raise ValueError(f"ring must be 0, 1, 2 or 3, got {ring!r}")
    return ring


def _user_source(program: str) -> Tuple[str, str]:
    """(name, source) for a PROGRAMS key or a source text."""
    if not isinstance(program, str):
        raise TypeError(f"program must be a PROGRAMS name or assembly source text, "
                        f"got {type(program).__name__}")
    if program in PROGRAMS:
        return program, PROGRAMS[program]
    if "\n" not in program and len(program) < 40:
        raise ValueError(f"unknown program {program!r}; known: {', '.join(PROGRAMS)} "
                         f"(or pass assembly source text)")
    return "custom program", program


@dataclass(frozen=True)
class ProbeImage:
    """The probe kernel and one user program, assembled together."""

    program: Program
    kernel_lines: int            #: source lines of the kernel before the user program
    user_source: str
    user_end: int                #: byte address just after the user program's own words


@lru_cache(maxsize=64)
def build(user_source: str, ring: int) -> ProbeImage:
    """Assemble the probe kernel with ``user_source`` appended at USER_BASE, for ``ring``.

    Cached: the widget re-runs the same few programs many times.  Raises
    :class:`~kernel_sim.asm.AsmError` with the user program's own line numbers when it is wrong.
    """
    ring = _check_ring(ring)
    kernel = guest_source(PROBE_FILE)
    if not kernel.endswith("\n"):
        kernel += "\n"
    kernel_lines = kernel.count("\n")
    text = kernel + user_source.rstrip("\n") + "\n"
    user_line_end = text.count("\n")
    try:
        prog = assemble(text + EPILOGUE, filename="ring_probe.s", defines={"USER_RING": ring})
    except AsmError as e:
        if e.line > kernel_lines:       # report the error in the learner's own numbering
            raise AsmError("user program", e.line - kernel_lines, e.col, e.message) from None
        raise
    for name, value in (("KCOUNT", KCOUNT), ("KLOG", KLOG), ("KLOG_N", KLOG_N),
                        ("KEXIT", KEXIT), ("USER_BASE", USER_BASE), ("KSTACK", KSTACK),
                        ("USER_STACK", USER_STACK)):
        assert prog.symbols[name] == value, f"ring_probe.s and rings.py disagree on {name}"
    user_end = USER_BASE
    for addr, (_fn, line) in prog.lines.items():
        if addr >= USER_BASE and kernel_lines < line <= user_line_end:
            user_end = max(user_end, addr + 4)
    return ProbeImage(prog, kernel_lines, user_source, user_end)


@dataclass(frozen=True)
class Fault:
    """One trap raised by the user program: where, which instruction, what kind."""

    pc: int
    instruction: str
    kind: str
    line: Optional[int] = None     #: line in the user program's source (1-based), if known


@dataclass
class RingProbe:
    """The outcome of :func:`probe`."""

    name: str
    ring: int
    strict: bool
    result: Result
    traps: Dict[str, int]           #: trap kind -> count, from the CPU's counters
    kernel_traps: Dict[str, int]    #: the same, from the probe kernel's counters in memory
    faults: List[Fault]             #: every fault, in order, from the CPU's trace buffer
    kernel_log: List[Tuple[int, str]]  #: (pc, kind) as logged by the kernel (first KLOG_MAX)
    exit_status: Optional[int]      #: the status passed to exit, None if exit was not called
    listing: List[Tuple[int, str, str]] = field(default_factory=list)  #: (pc, text, class)

    @property
    def console(self) -> str:
        return self.result.console

    @property
    def stop(self) -> str:
        return self.result.stop

    def fault_rows(self) -> List[dict]:
        return [dict(pc=f"0x{f.pc:04x}", instruction=f.instruction, trap=f.kind,
                     line=f.line) for f in self.faults]

    def faults_html(self) -> str:
        """The faults as an HTML table (pc, instruction, trap)."""
        esc = html.escape
        head = (f"<b>{esc(self.name)}</b> in ring {self.ring}"
                f"{' (strict ISA)' if self.strict else ''}: "
                f"{len(self.faults)} fault(s); stopped: {esc(self.result.stop)}; "
                f"console: <code>{esc(repr(self.console))}</code>")
        if not self.faults:
            return f"<div>{head}<br><i>no instruction faulted</i></div>"
        rows = "".join(f"<tr><td><code>0x{f.pc:04x}</code></td><td><code>{esc(f.instruction)}"
                       f"</code></td><td>{esc(f.kind)}</td></tr>" for f in self.faults)
        return _left(f"<div>{head}<table><thead><tr><th>pc</th><th>instruction</th>"
                     f"<th>trap</th></tr></thead><tbody>{rows}</tbody></table></div>")

    def _repr_html_(self) -> str:
        return self.faults_html()

    def __repr__(self) -> str:
        return (f"RingProbe({self.name!r}, ring={self.ring}, strict={self.strict}, "
                f"traps={self.traps}, console={self.console!r}, stop={self.stop!r})")


def _trap_records(m: Machine, since: int = 0) -> List[Tuple[int, int, int, int]]:
    """(tick, pc, vector, error) of the traps in the machine's trace ring, oldest first.

    ``since``: only records written at trace position ``since`` or later (``ctrl[C_TRACE_POS]``
    counts every record ever written; the ring keeps the last ``len(trace)`` of them).
    """
    total = int(m.ctrl[C_TRACE_POS])
    n = m.trace.shape[0]
    out = []
    for pos in range(max(since, total - n), total):
        tick, pc, kind, detail = (int(x) for x in m.trace[pos % n])
        if kind == TRACE_TRAP:
            out.append((tick, pc, detail >> 32, detail & 0xFFFFFFFF))
    return out


def _user_line(image: ProbeImage, pc: int) -> Optional[int]:
    where = image.program.lines.get(pc)
    if where is None or where[1] <= image.kernel_lines:
        return None
    return where[1] - image.kernel_lines


def new_machine(program: str, ring: int, strict: bool = False) -> Tuple[Machine, ProbeImage, str]:
    """A probe machine loaded with the kernel and ``program``, ready to boot (not run yet)."""
    ring = _check_ring(ring)
    name, source = _user_source(program)
    image = build(source, ring)
    m = Machine(memory_size=MEMORY_SIZE, strict=bool(strict), ring=0, trace_size=1024)
    m.load(image.program)
    return m, image, name


def probe(program: str, ring: int, strict: bool = False, count: int = DEFAULT_COUNT) -> RingProbe:
    """Run ``program`` (a :data:`PROGRAMS` name or source text) in ``ring`` under the probe kernel.

    ``strict=True`` makes the sensitive-but-unprivileged instructions trap outside ring 0.
    The trap counts come from the CPU's counters and are cross-checked against the probe
    kernel's own counters in memory; a mismatch raises RuntimeError.  (The demo programs never
    cause one.  A custom program could: paging is off in the probe, so the rings protect the
    privileged *instructions* but not the kernel's *memory* -- that needs the page tables'
    user/supervisor bit.)  ``faults`` lists the faults still in the machine's
    trace ring (its last 1024 events), which is all of them for any short program.
    """
    m, image, name = new_machine(program, ring, strict)
    result = m.run(count=count)
    vec_counts = result.traps
    traps = {kind: vec_counts.get(isa.VECTOR_KEYS[v], 0) for kind, v in TRAP_KINDS.items()}
    kernel_traps = {kind: m.read_word(KCOUNT + 4 * v) for kind, v in TRAP_KINDS.items()}
    # The kernel's last syscall (exit) may have been delivered but the count is stored before
    # the HLT, so the two must agree exactly.
    if traps != kernel_traps:
        raise RuntimeError(f"the probe kernel counted {kernel_traps} but the CPU delivered "
                           f"{traps}.  Did the program write to the kernel's memory or change "
                           f"its control registers?  (Paging is off in the probe, so rings "
                           f"protect instructions here, not memory.)")
    faults = []
    for _tick, pc, vec, _err in _trap_records(m):
        if vec in FAULT_VECTORS:
            word = m.read_word(pc) if 0 <= pc < MEMORY_SIZE else 0
            faults.append(Fault(pc, disassemble_word(word, pc, image.program.labels),
                                KIND_BY_VECTOR[vec],
                                _user_line(image, pc)))
    n_logged = min(m.read_word(KLOG_N), KLOG_MAX)
    kernel_log = [(m.read_word(KLOG + 8 * k), KIND_BY_VECTOR.get(m.read_word(KLOG + 8 * k + 4),
                                                                   "?")) for k in range(n_logged)]
    exit_word = m.read_word(KEXIT)
    exit_status = None if exit_word == isa.WORD_MASK else exit_word
    listing = []
    for pc in range(USER_BASE, image.user_end, 4):
        word = image.program.word_at(pc)
        ins = isa.BY_OPCODE.get(word >> 24)
        listing.append((pc, disassemble_word(word, pc, image.program.labels),
                        ins.cls if ins else "invalid"))
    return RingProbe(name, ring, bool(strict), result, traps, kernel_traps, faults, kernel_log,
                     exit_status, listing)


def privileged_instructions(program: str) -> List[str]:
    """Mnemonics of the privileged instructions in a user program, in order (from the ISA table).

    Used to predict the #GP count in rings 1..3 without running anything.
    """
    _name, source = _user_source(program)
    image = build(source, 3)
    out = []
    for pc in range(USER_BASE, image.user_end, 4):
        ins = isa.BY_OPCODE.get(image.program.word_at(pc) >> 24)
        if ins is not None and ins.privileged:
            out.append(ins.mnemonic)
    return out


def compare_rings(program: str, strict: bool = False) -> List[RingProbe]:
    """``probe(program, ring, strict)`` for rings 0, 1, 2 and 3."""
    return [probe(program, ring, strict) for ring in range(4)]


def ring_table_html(probes: List[RingProbe]) -> str:
    """One row per instruction of the user program, one column per ring: which trap it raised.

    All probes must be of the same program.
    """
    esc = html.escape
    base = probes[0]
    cols = "".join(f"<th>ring {p.ring}</th>" for p in probes)
    by_ring = [{f.pc: f.kind for f in p.faults} for p in probes]
    rows = []
    for pc, text, cls in base.listing:
        cells = "".join(
            f"<td style='text-align:center;{'color:#D55E00;font-weight:bold' if pc in d else ''}'>"
            f"{esc(d.get(pc, '-'))}</td>" for d in by_ring)
        rows.append(f"<tr><td><code>0x{pc:04x}</code></td><td><code>{esc(text)}</code></td>"
                    f"<td>{esc(cls)}</td>{cells}</tr>")
    consoles = "".join(f"<td style='text-align:center'><code>{esc(repr(p.console))}</code></td>"
                       for p in probes)
    stops = "".join(f"<td style='text-align:center'>{esc(p.stop)}</td>" for p in probes)
    return _left(f"<table><thead><tr><th>pc</th><th>instruction</th><th>class</th>{cols}</tr>"
                 f"</thead><tbody>{''.join(rows)}<tr><td></td><td><i>console</i></td><td></td>"
                 f"{consoles}</tr><tr><td></td><td><i>stopped by</i></td><td></td>{stops}</tr>"
                 f"</tbody></table>")


# --------------------------------------------------------------------------------------------
# One system call, step by step
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """The machine after one single step (``Machine.run(count=1)``)."""

    step: int
    pc: int               #: pc of the instruction this step executed
    instruction: str      #: its disassembly
    ring: int             #: ring *after* the step
    sp: int               #: sp *after* the step
    event: str            #: what happened besides the instruction ("" if nothing)


@dataclass
class SyscallPath:
    """One system call from ring 3 and back, recorded instruction by instruction."""

    steps: List[Step]
    trap: Tuple[int, int, int, int]     #: the trace record of the delivery (tick, pc, vector, err)
    frame: Dict[str, int]               #: the five-word trap frame the CPU pushed
    handler: int                        #: the handler address read from the vector table
    ksp: int                            #: the KSP the CPU switched to
    user_sp: int                        #: sp in ring 3 just before the SYSCALL
    kernel_instructions: int            #: instructions retired in ring 0 for this call
    kernel_cycles: int                  #: simulated cycles from SYSCALL to the return (model)
    return_instruction: str             #: "sysret" or "iret"

    def rows(self) -> List[dict]:
        return [dict(step=s.step, pc=f"0x{s.pc:04x}", instruction=s.instruction, ring=s.ring,
                     sp=f"0x{s.sp:05x}", event=s.event) for s in self.steps]

    def steps_html(self, first: Optional[int] = None, last: int = 0) -> str:
        """The steps as an HTML table; with ``first``, only the first ``first`` and the last
        ``last`` rows, with a "..." row between them."""
        esc = html.escape

        def row(s: Step) -> str:
            return (f"<tr><td>{s.step}</td><td><code>0x{s.pc:04x}</code></td>"
                    f"<td><code>{esc(s.instruction)}</code></td><td>{s.ring}</td>"
                    f"<td><code>0x{s.sp:05x}</code></td><td>{esc(s.event)}</td></tr>")

        steps = self.steps
        if first is None or first + last >= len(steps):
            body = "".join(row(s) for s in steps)
        else:
            skipped = len(steps) - first - last
            body = ("".join(row(s) for s in steps[:first])
                    + f"<tr><td colspan='6'><i>... {skipped} more steps ...</i></td></tr>"
                    + "".join(row(s) for s in steps[len(steps) - last:]))
        return _left("<table><thead><tr><th>step</th><th>pc</th><th>instruction</th>"
                     "<th>ring after</th><th>sp after</th><th>event</th></tr></thead><tbody>"
                     + body + "</tbody></table>")

    def _repr_html_(self) -> str:
        return self.steps_html()

    def frame_html(self) -> str:
        """The trap frame as the CPU left it on the kernel stack, lowest address first."""
        names = [("error", "error code (0 for a system call)"),
                 ("pc", "return pc (the instruction after SYSCALL)"),
                 ("ring", "the caller's ring"), ("flags", "the caller's FLAGS (IF = bit 9)"),
                 ("sp", "the caller's stack pointer")]
        body = "".join(f"<tr><td><code>0x{self.ksp - 20 + 4 * k:05x}</code></td>"
                       f"<td><code>0x{self.frame[key]:x}</code></td><td>{html.escape(meaning)}"
                       f"</td></tr>" for k, (key, meaning) in enumerate(names))
        return _left("<table><thead><tr><th>address</th><th>value</th><th>meaning</th></tr>"
                     f"</thead><tbody>{body}</tbody></table>")


def syscall_path(program: str = "system calls", lead: int = 4, strict: bool = False,
                 max_steps: int = 500) -> SyscallPath:
    """Single-step the first system call of ``program`` run in ring 3.

    The run goes at full speed up to ``lead`` instructions before the first ``SYSCALL`` of the
    user program, then ``Machine.run(count=1)`` steps one instruction at a time until the CPU is
    back in ring 3 and one more user instruction has run.  The delivery itself is read from the
    machine's trace buffer (``state.TRACE_TRAP`` records).
    """
    m, image, _name = new_machine(program, 3, strict)
    sys_pc = next((pc for pc in range(USER_BASE, image.user_end, 4)
                   if image.program.word_at(pc) >> 24 == isa.OP_SYSCALL), None)
    if sys_pc is None:
        raise ValueError("the program makes no system call")
    start = max(USER_BASE, sys_pc - 4 * lead)
    boot = m.run(count=DEFAULT_COUNT, until=start)
    if boot.stop != "until" or m.cpl != 3:
        raise RuntimeError(f"the program did not reach 0x{start:x} in ring 3 ({boot.stop})")
    steps = [Step(0, m.pc, "(before the first step)", m.cpl, int(m.regs[isa.SP]), "")]
    seen_kernel = False
    trap = None
    frame: Dict[str, int] = {}
    user_sp = ksp = 0
    kernel_instructions = 0
    cycles_at_syscall = 0
    return_instruction = ""
    kernel_cycles = 0
    for k in range(1, max_steps + 1):
        pc, cpl_before = m.pc, m.cpl
        sp_before = int(m.regs[isa.SP])
        text = disassemble_word(m.read_word(pc), pc, image.program.labels)
        traces_before = int(m.ctrl[C_TRACE_POS])
        cycles_before = int(m.ctrl[C_CYCLES])
        res = m.run(count=1)
        event = ""
        for tick, tpc, vec, err in _trap_records(m, since=traces_before):
            if vec == isa.VEC_SYSCALL and trap is None:
                trap = (tick, tpc, vec, err)
                user_sp = sp_before
                ksp = m.read_cr("ksp")
                base = ksp - 20
                frame = dict(error=m.read_word(base), pc=m.read_word(base + 4),
                             ring=m.read_word(base + 8), flags=m.read_word(base + 12),
                             sp=m.read_word(base + 16))
                cycles_at_syscall = cycles_before
                event = (f"trap 0x80 delivered: ring {cpl_before} -> 0, sp switched to KSP "
                         f"0x{ksp:x}, 5-word frame pushed, pc = vector table entry")
        if cpl_before == 0:
            kernel_instructions += 1
            seen_kernel = True
            if text in ("sysret", "iret") and m.cpl == 3:
                return_instruction = text
                event = f"{text.upper()}: frame popped, back to ring 3, sp = 0x{m.regs[isa.SP]:x}"
                kernel_cycles = res.cycles - cycles_at_syscall
        steps.append(Step(k, pc, text, m.cpl, int(m.regs[isa.SP]), event))
        if seen_kernel and cpl_before == 3 and m.cpl == 3:
            break
        if res.stop not in ("budget", "until"):
            raise RuntimeError(f"the machine stopped ({res.stop}) before the call returned")
    else:
        raise RuntimeError(f"the system call did not return within {max_steps} steps")
    if trap is None:
        raise RuntimeError("no system-call trap was recorded in the trace")
    tvb = m.read_cr("tvb")
    handler = m.read_word(tvb + 4 * isa.VEC_SYSCALL)
    return SyscallPath(steps, trap, frame, handler, ksp, user_sp, kernel_instructions,
                       kernel_cycles, return_instruction)


__all__ = ["PROGRAMS", "TRAP_KINDS", "probe", "RingProbe", "Fault", "privileged_instructions",
           "compare_rings", "ring_table_html", "syscall_path", "SyscallPath", "Step",
           "guest_source", "kernel_section", "build", "new_machine"]
