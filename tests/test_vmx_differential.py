"""Differential test of VMX non-root operation: the jitted CPU against the reference interpreter.

The programs are those of :mod:`test_differential` (same generator), but each machine starts
as a *guest* in VMX non-root operation (``C_VMX = 1``), under a random VMCS:

* random execution controls (any subset of the ``CTL_*`` exiting bits),
* a random exception bitmap (often #DE/#UD/#GP/#PF, sometimes everything),
* with or without EPT: a nested table of 1..4 levels in host memory (at the top of physical
  memory) mapping guest-physical pages to host-physical ones -- mostly the same page, sometimes
  another one or one beyond memory, with random R/W/X permissions and some pages missing,
* with or without a VPID (stale TLB entries of the guest are then tagged with it),
* sometimes an event to inject at VM entry, a CR0 read shadow, and stale exit information
  left by an earlier exit.

Both machines run the same state; the test compares registers, every ``ctrl`` slot, memory,
the TLB, counters, console, trace and the stop reason.  The exit-information fields (``C_EXIT_*``,
``C_IDT_VECTORING*``) are compared where the contract defines them for the way the run ended
(:data:`naive.EXIT_INFO_DEFINED`, e.g. ``C_EXIT_GPA`` only after an EPT violation); elsewhere
VT-x calls them undefined and they keep stale values, so they are left out of the comparison.

After the batch a coverage check requires every basic exit reason, every other way a guest's
run can end (budget, halt, until, intercepted and unhandled traps), both kinds of exit during
event delivery (EPT violation and #PF with IDT-vectoring information; an EPT violation also
while delivering the guest's own event, not an injected one), an EPT violation on a guest A/D
update and on a fetch, nested references and a delivered injected event.  Since the first exit
ends a run, the generator is steered (see ``vmx_cases``): an exiting instruction planted at
the start of some programs, "quiet" guests without exiting controls (some planted HLT or an
intercepted #UD), a page that trap delivery needs broken in the nested or the guest's table.
Measured: every item appears in each of several 500-example batches with different seeds.

Settings: ``KERNEL_SIM_VMX_EXAMPLES`` (default 1000; the coverage check needs at least 300);
``KERNEL_SIM_FUZZ=1`` makes the examples random instead of a fixed, derandomized set.
"""
from __future__ import annotations

import os
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import (
    EPT_R,
    EPT_RWX,
    EPT_W,
    EPT_X,
    EPTQ_FINAL,
    EPTQ_WRITE,
    EXIT_INFO_FIELDS,
    exit_info_defined,
)
from test_differential import (
    CODE,
    CTRL_NAMES,
    FUZZ,
    PAGE,
    PERCENT,
    SEED,
    TABLES,
    build_reference,
    cases,
    differences,
    needs_jit,
    run_jitted,
)

from kernel_sim import isa
from kernel_sim import state as S

EXAMPLES = int(os.environ.get("KERNEL_SIM_VMX_EXAMPLES", "1000"))
MIN_EXAMPLES_FOR_COVERAGE = 300
ALL_EXIT_REASONS = tuple(sorted(S.EXIT_NAMES))
#: the other ways a guest's run ends (a triple fault is a VM exit in non-root operation)
GUEST_STOPS = (S.STOP_BUDGET, S.STOP_HALT, S.STOP_UNHANDLED_TRAP, S.STOP_TRAP_EXIT,
               S.STOP_UNTIL)

# ---- the VMCS: controls, exception bitmap, EPT, VPID, injection -----------------------------
#: each exiting control is set with this probability (in percent); interrupt-window exiting is
#: rarer: with IF = 1 it exits at the first instruction boundary and the program never runs
CONTROL_PERCENT = {S.CTL_EXTINT_EXITING: 50, S.CTL_INTWIN_EXITING: 10, S.CTL_HLT_EXITING: 50,
                   S.CTL_INVLPG_EXITING: 40, S.CTL_CR3_LOAD_EXITING: 40,
                   S.CTL_CR3_STORE_EXITING: 40, S.CTL_IO_EXITING: 30,
                   S.CTL_CR0_PG_EXITING: 40}
EXCEPTIONS = (isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF)
EPT_LEVELS = st.integers(1, 4)
P, U = isa.PTE_P, isa.PTE_U
#: permissions of a nested leaf entry for an ordinary guest page (0: missing)
EPT_PAGE_PERMS = (0, EPT_R, EPT_R | EPT_W, EPT_R | EPT_X, EPT_X, EPT_RWX, EPT_RWX, EPT_RWX)
VPID = st.sampled_from([1, 2, 0x7FF])
INJECTABLE = st.sampled_from([isa.VEC_DE, isa.VEC_UD, isa.VEC_GP, isa.VEC_PF, isa.VEC_PF,
                              isa.VEC_SYSCALL, 3, isa.VEC_TIMER])
STALE = st.integers(0, isa.WORD_MASK)        # exit information left by an earlier VM exit
E = isa.encode
#: steering: an exiting instruction planted early in the program, with its control set (the
#: first exit ends the run, so the instructions of the random program rarely get a turn)
FOCUS = st.sampled_from([None] * 4 + ["cr", "cr", "io", "hlt", "invlpg", "vmcall"])
FOCUS_INSTRUCTIONS = {
    "cr": (S.CTL_CR3_LOAD_EXITING | S.CTL_CR3_STORE_EXITING | S.CTL_CR0_PG_EXITING,
           [E(isa.OP_WRCR, 3, 0, isa.CR_PTBR), E(isa.OP_RDCR, 7, 0, isa.CR_PTBR),
            E(isa.OP_WRCR, 12, 0, isa.CR_PAGING), E(isa.OP_RDCR, 2, 0, isa.CR_PAGING)]),
    "io": (S.CTL_IO_EXITING, [E(isa.OP_IN, 4, 0, isa.PORT_TICKS),
                              E(isa.OP_OUT, 5, 0, isa.PORT_CONSOLE)]),
    "hlt": (S.CTL_HLT_EXITING, [E(isa.OP_HLT)]),
    "invlpg": (S.CTL_INVLPG_EXITING, [E(isa.OP_INVLPG, 6)]),
    "vmcall": (0, [E(isa.OP_VMCALL, 0, 0, 0x42)]),
}
#: steering of the quiet guests: a HLT with IF = 0 (the run halts), or an invalid instruction
#: whose #UD the monitor intercepts (STOP_TRAP_EXIT; the delivery then touches no memory)
QUIET_FOCUS = st.sampled_from([None, None, "halt", "intercept"])


def ept_tables(rng: random.Random, memory_size: int, levels: int, guest_levels: int,
               read_only_tables: bool, fragile: int | None) -> tuple[int, dict[int, int]]:
    """A nested table of ``levels`` levels in the top pages of host memory.

    Returns (EPTP, {host word index: value}).  Entry 0 of each upper table chains down to the
    leaf, so guest-physical addresses below 4 MiB are mapped by the leaf; everything else is
    missing (an EPT violation).  Guest pages holding the guest's own structures (vector table,
    handlers, code, stacks, page tables) are usually mapped identically with all permissions;
    the others get random permissions, another host frame or one beyond memory.
    ``read_only_tables``: the guest's page tables are often read-only in the nested table (the
    guest's A/D updates then exit); ``fragile``: a page that trap delivery needs (vector
    table or a stack) is read-only or missing, so deliveries exit with IDT-vectoring information.
    """
    pages = memory_size // PAGE
    tables = [(pages - levels + k) * PAGE for k in range(levels)]      # root first
    words: dict[int, int] = {}
    for upper, lower in zip(tables, tables[1:], strict=False):
        perms = EPT_RWX if rng.random() < 0.93 else rng.choice([EPT_R | EPT_X, EPT_R, 0])
        words[upper // 4] = lower | perms
    leaf = tables[-1]
    guest_tables = range(TABLES // PAGE, TABLES // PAGE + guest_levels)
    for page in range(pages + 3):
        if page in (0, 1, 2, 3, 4, 5) or page in guest_tables:
            perms = EPT_RWX if rng.random() < 0.9 else rng.choice(EPT_PAGE_PERMS)
            if page in guest_tables and read_only_tables and rng.random() < 0.5:
                perms = EPT_R | EPT_X     # the guest's tables read-only: its A/D updates exit
            if page == fragile:
                perms = rng.choice([0, EPT_R, EPT_R | EPT_X])
        else:
            perms = rng.choice(EPT_PAGE_PERMS)
        if perms == 0:
            continue
        frame = page * PAGE
        roll = rng.random()
        if roll < 0.08:
            frame = rng.randrange(pages) * PAGE                # another host page
        elif roll < 0.11:
            frame = memory_size                                 # beyond host memory: #GP
        words[leaf // 4 + page] = frame | perms
    return tables[0], words


@st.composite
def vmx_cases(draw, delivery_pf: bool = False):
    """A case of test_differential's generator, started as a guest under a random VMCS.

    ``delivery_pf``: always break the guest's stack pages in its own (paged) tables and exit on
    #PF, so that deliveries meet a page fault that exits with IDT-vectoring information (rare
    in the general mix).
    """
    case = draw(cases().filter(lambda c: c.ctrl[S.C_PAGING] & 1) if delivery_pf else cases())
    rng = random.Random(draw(SEED))
    # a quarter of the guests run without exiting controls (EPT and VPID still apply): their
    # runs end as native runs do (budget, halt, until, intercepted or unhandled traps)
    quiet = draw(PERCENT) >= 75 and not delivery_pf
    controls = 0
    for bit, percent in CONTROL_PERCENT.items():
        if draw(PERCENT) < percent and not quiet:
            controls |= bit
    bitmap = 0
    if quiet:
        pass
    elif draw(PERCENT) >= 90:
        bitmap = isa.WORD_MASK                         # every exception goes to the monitor
    else:
        for vector in EXCEPTIONS:
            if draw(PERCENT) < 30:
                bitmap |= 1 << vector
    ctrl = dict(case.ctrl)
    words = dict(case.words)
    program = list(case.program)
    intercept = case.intercept
    quiet_focus = draw(QUIET_FOCUS) if quiet else None
    if quiet_focus is not None:
        at = rng.randrange(min(2, len(program)))
        ctrl[S.C_CPL] = 0
        if quiet_focus == "halt":
            program[at] = words[CODE // 4 + at] = E(isa.OP_HLT)
            ctrl[S.C_IF] = 0
        else:
            program[at] = words[CODE // 4 + at] = E(0x00)
            intercept = tuple(sorted(set(intercept) | {isa.VEC_UD}))
    focus = draw(FOCUS)
    if focus is not None and not quiet:
        bits, choices = FOCUS_INSTRUCTIONS[focus]
        controls |= bits
        at = rng.randrange(min(2, len(program)))
        program[at] = words[CODE // 4 + at] = rng.choice(choices)
        ctrl[S.C_CPL] = 0                  # exiting instructions exit in ring 0 only
    if delivery_pf:
        # the first instruction is invalid: its #UD (neither intercepted nor in the bitmap) is
        # delivered at once, and the frame push meets a guest #PF on a broken stack page --
        # both stacks (user, kernel) are broken, and #PF exits
        leaf = TABLES + PAGE * (case.levels - 1)
        for page in (4, 5):
            words[leaf // 4 + page] = page * PAGE | rng.choice([0, P, P | U])
        program[0] = words[CODE // 4] = E(0x00)
        intercept = tuple(v for v in intercept if v != isa.VEC_UD)
        bitmap = (bitmap | 1 << isa.VEC_PF) & ~(1 << isa.VEC_UD)
    elif draw(PERCENT) >= 85:
        # the guest's own tables break a stack page, so that deliveries meet a guest #PF
        # (with #PF in the bitmap: an exit during event delivery)
        leaf = TABLES + PAGE * (case.levels - 1)
        page = rng.choice([4, 5])
        words[leaf // 4 + page] = page * PAGE | rng.choice([0, P, P | U])
        if not quiet and draw(PERCENT) >= 40:
            bitmap |= 1 << isa.VEC_PF
    until = case.until
    if quiet and draw(PERCENT) >= 60:
        until = CODE + 4 * rng.randrange(1, 4)      # a short run that ends at an address
    ctrl.update({S.C_VMX: 1, S.C_EXCEPTION_BITMAP: bitmap, S.C_CR0_SHADOW: rng.randrange(2),
                 S.C_EPTP: 0, S.C_EPT_LEVELS: 0, S.C_VPID: 0, S.C_INJECT: 0,
                 S.C_INJECT_ERROR: rng.choice([0, 2, 7, isa.PF_WRITE | isa.PF_USER])})
    if draw(PERCENT) >= 30 and not delivery_pf:        # EPT on
        controls |= S.CTL_ENABLE_EPT
        levels = draw(EPT_LEVELS)
        fragile = rng.choice([None, None, 0, 4, 5, 5])   # vector table, user or kernel stack
        eptp, ept_words = ept_tables(rng, case.memory_size, levels, case.levels,
                                     read_only_tables=draw(PERCENT) >= 60, fragile=fragile)
        words.update(ept_words)
        ctrl[S.C_EPTP], ctrl[S.C_EPT_LEVELS] = eptp, levels
    tlb = dict(case.tlb)
    if draw(PERCENT) >= 40:                            # a VPID: the guest's TLB entries carry it
        controls |= S.CTL_ENABLE_VPID
        vpid = draw(VPID)
        ctrl[S.C_VPID] = vpid
        for slot, (key, value) in list(tlb.items()):
            if rng.random() < 0.6:
                tlb[slot] = (key + (vpid << 32), value)     # ((vpid << 12 | asid) << 20 | vpn) + 1
    ctrl[S.C_VMX_CONTROLS] = controls
    if draw(PERCENT) >= 75:                            # an event to inject at VM entry
        vector = draw(INJECTABLE)
        if vector != isa.VEC_TIMER or ctrl[S.C_IF]:    # (VM entry refuses a timer with IF = 0)
            ctrl[S.C_INJECT] = S.INJECT_VALID | vector
            ctrl[S.C_FAULT_ADDR] = rng.choice([0, 0x6010, 0x400000])   # the monitor's CR2
    # exit information of an earlier exit (IDT-vectoring information: cleared by VM entry)
    for index in (S.C_EXIT_REASON, S.C_EXIT_QUAL, S.C_EXIT_GPA, S.C_EXIT_GLA, S.C_EXIT_INSTR,
                  S.C_EXIT_INTR_INFO, S.C_EXIT_INTR_ERROR, S.C_IDT_VECTORING_ERROR):
        ctrl[index] = draw(STALE)
    ctrl[S.C_IDT_VECTORING] = 0
    return replace(case, program=program, ctrl=ctrl, words=words, tlb=tlb, until=until,
                   intercept=intercept)


# ---- comparing ------------------------------------------------------------------------------
def comparable(state: dict, defined: tuple[int, ...]) -> dict:
    """``state`` with the exit-information fields the contract leaves undefined zeroed."""
    ctrl = np.array(state["ctrl"])
    for index in EXIT_INFO_FIELDS:
        if index not in defined:
            ctrl[index] = 0
    return dict(state, ctrl=ctrl)


class ExitCoverage:
    """Which VM exits (and other VMX events) a batch produced, according to the reference."""

    def __init__(self):
        self.examples = 0
        self.reasons: set[int] = set()
        self.stops: set[int] = set()
        self.events: set[str] = set()

    def record(self, initial: dict, final: dict) -> None:
        self.examples += 1
        ctrl = final["ctrl"]
        self.stops.add(int(ctrl[S.C_STOP_REASON]))
        if initial["ctrl"][S.C_INJECT] & S.INJECT_VALID and \
                final["counters"][S.EV_TRAPS] > initial["counters"][S.EV_TRAPS]:
            self.events.add("an injected event delivered to the guest")
        if final["counters"][S.EV_NESTED_REFS]:
            self.events.add("nested (EPT) references counted")
        if ctrl[S.C_STOP_REASON] != S.STOP_VM_EXIT:
            return
        reason = int(ctrl[S.C_EXIT_REASON])
        self.reasons.add(reason)
        during_delivery = ctrl[S.C_IDT_VECTORING] & S.INJECT_VALID
        if during_delivery and reason == S.EXIT_EPT_VIOLATION:
            self.events.add("EPT violation during event delivery")
            if not initial["ctrl"][S.C_INJECT] & S.INJECT_VALID:
                self.events.add("EPT violation while delivering the guest's own event")
        if during_delivery and reason == S.EXIT_EXCEPTION_NMI:
            self.events.add("#PF exit during event delivery")
        qual = int(ctrl[S.C_EXIT_QUAL])
        if reason == S.EXIT_EPT_VIOLATION and qual & EPTQ_WRITE and not qual & EPTQ_FINAL:
            self.events.add("EPT violation on a guest A/D-bit update")
        if reason == S.EXIT_EPT_VIOLATION and not during_delivery and ctrl[S.C_EXIT_INSTR] == 0:
            self.events.add("EPT violation on an instruction fetch")

    def missing(self) -> list[str]:
        out = [f"exit reason {S.EXIT_NAMES[r]} never happened" for r in ALL_EXIT_REASONS
               if r not in self.reasons]
        out += [f"stop reason {S.STOP_NAMES[r]!r} never happened" for r in GUEST_STOPS
                if r not in self.stops]
        for event in ("an injected event delivered to the guest", "nested (EPT) references counted",
                      "EPT violation during event delivery",
                      "EPT violation while delivering the guest's own event",
                      "EPT violation on a guest A/D-bit update",
                      "EPT violation on an instruction fetch"):
            if event not in self.events:
                out.append(f"never: {event}")
        return out


def run_reference(case):
    m = build_reference(case)
    initial = m.export()
    reason = m.run(case.budget, case.until)
    return initial, reason, m.export()


# ---- the tests ------------------------------------------------------------------------------
def test_vmx_cases_run_on_the_reference():
    """The VMX generator and the reference agree with themselves (no jitted CPU needed)."""
    seen = ExitCoverage()

    @settings(max_examples=30, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=vmx_cases())
    def check(case):
        initial, reason, final = run_reference(case)
        assert reason != S.STOP_NONE and final["ctrl"][S.C_STOP_REASON] == reason
        assert final["ctrl"][S.C_INJECT] == 0, "VM entry consumes the injected event"
        if reason == S.STOP_VM_EXIT:
            assert int(final["ctrl"][S.C_EXIT_REASON]) in S.EXIT_NAMES
        seen.record(initial, final)

    check()
    assert seen.examples >= 30


def compare_with_reference(case, seen: "ExitCoverage") -> None:
    """Run ``case`` on the reference and the jitted CPU; fail on any difference."""
    initial, ref_reason, expected = run_reference(case)
    seen.record(initial, expected)
    jit_reason, actual = run_jitted(case, initial)
    defined = exit_info_defined(expected["ctrl"])
    diffs = differences(comparable(expected, defined), comparable(actual, defined))
    if jit_reason != ref_reason:
        diffs.insert(0, f"stop reason: reference {S.STOP_NAMES[ref_reason]}, "
                        f"jitted {S.STOP_NAMES.get(jit_reason, jit_reason)}")
    if diffs and ref_reason == S.STOP_VM_EXIT:
        reason = int(expected["ctrl"][S.C_EXIT_REASON])
        diffs.append(f"(the reference exited with {S.EXIT_NAMES.get(reason, reason)}; exit "
                     f"fields compared: {[CTRL_NAMES[i] for i in defined]})")
    assert not diffs, ("jitted CPU differs from the reference in VMX non-root operation:"
                       "\n  " + "\n  ".join(diffs))


@needs_jit
@pytest.mark.slow
def test_jitted_cpu_matches_reference_in_vmx_non_root_operation():
    seen = ExitCoverage()

    @settings(max_examples=EXAMPLES, derandomize=not FUZZ, deadline=None,
              database=None if not FUZZ else settings.default.database,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=vmx_cases())
    def check(case):
        compare_with_reference(case, seen)

    check()
    if EXAMPLES >= MIN_EXAMPLES_FOR_COVERAGE:
        missing = seen.missing()
        assert not missing, (f"{seen.examples} generated guests did not exercise VMX "
                             "non-root operation:\n  " + "\n  ".join(missing))


@needs_jit
def test_page_faults_that_exit_during_event_delivery_match_the_reference():
    """A #PF met while delivering an event, with #PF in the exception bitmap, exits with the
    event as IDT-vectoring information.  The general mix produces it only rarely, so this
    batch always breaks the guest's stack pages and always intercepts #PF."""
    seen = ExitCoverage()

    @settings(max_examples=150, derandomize=not FUZZ, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=vmx_cases(delivery_pf=True))
    def check(case):
        compare_with_reference(case, seen)

    check()
    assert "#PF exit during event delivery" in seen.events, (
        f"{seen.examples} guests with broken stack pages never took a #PF exit during delivery")
