"""hw_shadow and hw_ept: the VMCS controls, their refusals, and resource control.

* **Optional controls cost exits, nothing else.**  An optional execution control (hw_ept's
  CR3-load/-store, CR0.PG and INVLPG exiting) or an extra exception-bitmap vector makes the
  monitor emulate (or re-inject) what the CPU would have done itself: the guest's state must not
  change, and the extra exits must be exactly the number of times the guest did the governed
  thing -- which the bare machine counts (``run_technique(img, "native")``'s ``events`` and
  ``traps``).
* **Required controls and bad settings are refused**, with a message that says why.
* **The VMCS holds what the settings asked for** (VMREAD after boot).
* **Resource control.**  The attacks of test_trap_emulate.py (built by containment.py: write
  beyond the RAM, map a frame beyond it, name the monitor's own tables as a PTBR; and spinning
  with interrupts off), aimed at the VMCS page as well, under both memory modes: the monitor's
  unused frames, the rest of the VMCS page and a guard region stay untouched, the shadow or
  nested tables map only the guest's RAM, and the guest sees what the bare machine shows it.
"""
from __future__ import annotations

import pytest
import containment as cm
from guest_programs import RAM

from kernel_sim import isa
from kernel_sim.guest import build_guest
from kernel_sim.monitors import MonitorError, run_technique
from kernel_sim.monitors.base import MONITOR_BYTES
from kernel_sim.monitors.hardware_assist import (
    GOVERNED_EVENT,
    OPTIONAL_CONTROLS,
    REQUIRED_CONTROLS,
    REQUIRED_VECTORS,
    VMCS_ADDRESS,
    HwEpt,
    HwShadow,
)
from kernel_sim.vmx import CONTROLS, FIELDS, VMCS_AREAS

MODES = {"hw_shadow": HwShadow, "hw_ept": HwEpt}
#: the exit each optional control produces
EXIT_OF = {"cr3_load_exiting": "CR_ACCESS", "cr3_store_exiting": "CR_ACCESS",
           "cr0_pg_exiting": "CR_ACCESS", "invlpg_exiting": "INVLPG"}

# ---- a small kernel that does each governed thing a known number of times -------------------
K = 7
#: identity-maps the RAM, turns paging on (1 WRCR ptbr, 1 WRCR paging), then K times: RDCR
#: ptbr, WRCR ptbr, RDCR paging, WRCR paging, INVLPG.  The bare machine must count
#: K reads of the PTBR, K + 1 writes of it and of the paging register, K INVLPGs.
CR_PROBE = f"""
PD = 0x10000
PT0 = 0x11000
{cm.identity_map(RAM)}        li   r1, PD
        li   r2, PT0 | 3
        st   r2, [r1]
        wrcr ptbr, r1
        movi r9, 1
        wrcr paging, r9
        li   r10, 0x20000
        movi r5, {K}
        movi r12, 0
again:  rdcr r7, ptbr
        wrcr ptbr, r7
        rdcr r11, paging            ; 1: paging is on
        add  r12, r12, r11
        wrcr paging, r9
        invlpg r10
        ld   r6, [r10]
        addi r5, r5, -1
        bne  r5, r0, again
        hlt
"""
CR_PROBE_NATIVE = {"ptbr_reads": K, "ptbr_writes": K + 1, "paging_writes": K + 1, "invlpg": K}

#: K invalid instructions, each skipped by the #UD handler (vector 6)
UD_PROBE = f"""
        li   r1, 0x1000
        li   r2, skip
        st   r2, [r1 + 4 * {isa.VEC_UD}]
        wrcr tvb, r1
        movi r5, {K}
again:  .word 0xFF000000           ; no such opcode: #UD
        addi r5, r5, -1
        bne  r5, r0, again
        hlt
skip:   push r1
        ld   r1, [sp + 8]
        addi r1, r1, 4
        st   r1, [sp + 8]
        addi r12, r12, 1
        pop  r1
        iret
"""


def _guest(name):
    if name == "cr_probe":
        return cm.image(CR_PROBE)
    if name == "ud_probe":
        return cm.image(UD_PROBE)
    return build_guest(name, count=6)


def test_the_probes_do_what_they_say_on_the_bare_machine():
    r = run_technique(cm.image(CR_PROBE), "native")
    assert r.stop == "halt"
    assert {k: r.events[k] for k in CR_PROBE_NATIVE} == CR_PROBE_NATIVE
    assert r.registers[12] == K                     # RDCR paging read 1 each time
    u = run_technique(cm.image(UD_PROBE), "native")
    assert u.stop == "halt" and u.traps["invalid_opcode"] == K and u.registers[12] == K


# ---- optional controls -------------------------------------------------------------------------
#: (control, guest) pairs: a workload where the governed event happens (the probe for the PTBR
#: reads the course kernel never does) -- every optional control is covered twice at least
OPTIONAL_CASES = [("cr3_load_exiting", "ctxswitch"), ("cr3_load_exiting", "cr_probe"),
                  ("cr3_store_exiting", "cr_probe"), ("cr3_store_exiting", "syscall"),
                  ("cr0_pg_exiting", "syscall"), ("cr0_pg_exiting", "cr_probe"),
                  ("invlpg_exiting", "ptemod"), ("invlpg_exiting", "cr_probe")]


def test_the_cases_cover_every_optional_control():
    assert {c for c, _ in OPTIONAL_CASES} == set(OPTIONAL_CONTROLS["hw_ept"]) == set(GOVERNED_EVENT)
    assert OPTIONAL_CONTROLS["hw_shadow"] == ()     # shadow paging needs them all


@pytest.mark.parametrize("control,guest", OPTIONAL_CASES, ids=lambda v: str(v))
def test_an_optional_control_adds_one_exit_per_governed_event(control, guest):
    img = _guest(guest)
    native = run_technique(img, "native")
    base = run_technique(img, "hw_ept")
    on = run_technique(img, "hw_ept", controls={control: True})
    assert native.stop == base.stop == on.stop == "halt"
    label = EXIT_OF[control]
    added = on.monitor_events.get(label, 0) - base.monitor_events.get(label, 0)
    assert added == native.events[GOVERNED_EVENT[control]]
    if guest == "cr_probe":
        assert added == CR_PROBE_NATIVE[GOVERNED_EVENT[control]]     # not vacuous
    # nothing else exits more (timer exits depend on run length: the guest's time is the same,
    # so they do not move either)
    others = {k: on.monitor_events.get(k, 0) - base.monitor_events.get(k, 0)
              for k in set(on.monitor_events) | set(base.monitor_events) if k != label}
    assert not any(others.values()), others
    # the guest cannot tell
    assert on.state_digest == base.state_digest == native.state_digest
    assert on.registers == native.registers


def test_hw_shadow_exits_on_every_ptbr_and_paging_access_and_invlpg():
    """hw_shadow's required CR3/CR0/INVLPG controls: the exits are the native counts."""
    for guest in ("cr_probe", "forkwait", "pgfault"):
        img = _guest(guest)
        native = run_technique(img, "native")
        r = run_technique(img, "hw_shadow")
        cr = sum(native.events[GOVERNED_EVENT[c]] for c, exit in EXIT_OF.items()
                 if exit == "CR_ACCESS")
        assert r.monitor_events.get("CR_ACCESS", 0) == cr, guest
        assert r.monitor_events.get("INVLPG", 0) == native.events["invlpg"], guest
        assert r.state_digest == native.state_digest, guest


def injected(result, key):
    """How many times the monitor injected ``key`` (from the result's notes)."""
    for note in result.notes:
        if note.startswith("events injected at VM entry: "):
            for item in note.split(": ", 1)[1].split(", "):
                name, _, n = item.rpartition(" x")
                if name == key:
                    return int(n)
    return 0


#: (mode, vector, guest): the guest's own exceptions, intercepted with the exception bitmap
VECTOR_CASES = [("hw_ept", isa.VEC_PF, "pgfault"),
                ("hw_ept", isa.VEC_DE, "divzero"), ("hw_shadow", isa.VEC_DE, "divzero"),
                ("hw_ept", isa.VEC_UD, "ud_probe"), ("hw_shadow", isa.VEC_UD, "ud_probe")]


@pytest.mark.parametrize("mode,vector,guest", VECTOR_CASES, ids=lambda v: str(v))
def test_an_exception_bitmap_vector_adds_one_exit_per_guest_exception(mode, vector, guest):
    img = _guest(guest)
    key = isa.VECTOR_KEYS[vector]
    native = run_technique(img, "native")
    base = run_technique(img, mode)
    on = run_technique(img, mode, exception_bitmap=(vector,))
    assert native.stop == base.stop == on.stop == "halt"
    label = f"EXCEPTION_NMI:{key}"
    added = on.monitor_events.get(label, 0) - base.monitor_events.get(label, 0)
    assert native.traps[key] == (K if guest == "ud_probe" else 6)
    assert added == native.traps[key]
    # each exit re-injects the exception at the next entry (both runs may also re-inject an
    # event whose delivery an EPT violation interrupted: those cancel)
    assert injected(on, key) - injected(base, key) == added
    assert on.state_digest == base.state_digest == native.state_digest
    assert on.traps == native.traps


def test_page_faults_are_required_in_hw_shadow_only():
    assert REQUIRED_VECTORS == {"hw_shadow": (isa.VEC_PF,), "hw_ept": ()}
    img = _guest("pgfault")
    native = run_technique(img, "native")
    again = run_technique(img, "hw_shadow", exception_bitmap=(isa.VEC_PF,))
    assert again.monitor_events == run_technique(img, "hw_shadow").monitor_events
    assert again.state_digest == native.state_digest


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,control", [(m, c) for m in MODES for c in REQUIRED_CONTROLS[m]],
                         ids=lambda v: str(v))
def test_clearing_a_required_control_is_refused(mode, control):
    with pytest.raises(MonitorError, match=f"{mode} requires {control}"):
        MODES[mode](cm.image("hlt"), controls={control: False})
    MODES[mode](cm.image("hlt"), controls={control: True})      # asking for it is fine


def test_required_controls_are_the_documented_ones():
    base = {"external_interrupt_exiting", "hlt_exiting", "io_exiting"}
    assert set(REQUIRED_CONTROLS["hw_ept"]) == base
    assert set(REQUIRED_CONTROLS["hw_shadow"]) == base | set(GOVERNED_EVENT)


@pytest.mark.parametrize("mode", MODES)
def test_bad_controls_and_vectors_are_refused(mode):
    cls, img = MODES[mode], cm.image("hlt")
    with pytest.raises(ValueError, match="unknown VMCS control 'cr8_load_exiting'"):
        cls(img, controls={"cr8_load_exiting": True})
    with pytest.raises(ValueError, match="interrupt_window_exiting is managed by the monitor"):
        cls(img, controls={"interrupt_window_exiting": True})
    for name in ("enable_ept", "enable_vpid"):
        with pytest.raises(ValueError, match=f"{name} is chosen by the technique"):
            cls(img, controls={name: True})
    with pytest.raises(ValueError, match="must be True or False"):
        cls(img, controls={"hlt_exiting": 1})
    for bad in (32, -1, True, "14", 14.0):
        with pytest.raises(ValueError, match="exception vectors 0..31"):
            cls(img, exception_bitmap=(bad,))
    with pytest.raises(ValueError, match="ept_levels"):
        cls(img, ept_levels=5)


def test_the_first_vtx_cpu_has_neither_ept_nor_vpid():
    img = cm.image("hlt")
    with pytest.raises(MonitorError, match="first-vtx CPU preset .* has no EPT"):
        HwEpt(img, cpu="first-vtx")
    with pytest.raises(MonitorError, match="has no VPID"):
        HwShadow(img, cpu="first-vtx", vpid=True)
    r = run_technique(img, "hw_shadow", cpu="first-vtx")     # without VPID it runs
    assert r.stop == "halt"
    assert any("no VPID: the TLB was flushed" in note for note in r.notes)


# ---- the VMCS really holds the settings ------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_the_vmcs_holds_the_controls_and_the_exception_bitmap(mode):
    cls = MODES[mode]
    optional = {c: True for c in OPTIONAL_CONTROLS[mode][:2]}
    mon = cls(cm.image("hlt"), controls=optional, exception_bitmap=(isa.VEC_DE, isa.VEC_UD))
    mon._boot()
    assert mon.vmcs.address == VMCS_ADDRESS
    got = mon.vmcs.controls()
    wanted = set(REQUIRED_CONTROLS[mode]) | set(optional) | {"enable_vpid"}   # modern: VPID
    if mode == "hw_ept":
        wanted.add("enable_ept")
    assert {name for name, on in got.items() if on} == wanted
    bitmap = mon.vmcs.read("EXCEPTION_BITMAP")
    assert bitmap == sum(1 << v for v in {isa.VEC_DE, isa.VEC_UD, *REQUIRED_VECTORS[mode]})
    assert mon.vmcs.read("VPID") == 1
    if mode == "hw_ept":
        assert mon.vmcs.read("EPT_POINTER") == mon.nested.root != 0
        assert mon.vmcs.read("EPT_LEVELS") == 4
    # VMREAD is a read of host memory: the VMCS page is where it says
    word = VMCS_ADDRESS // 4 + FIELDS["EXEC_CONTROLS"]
    assert int(mon.host.mem[word]) == sum(CONTROLS[n] for n in wanted)
    # without VPID (first-vtx) the control is clear and the VPID field 0
    plain = HwShadow(cm.image("hlt"), cpu="first-vtx")
    plain._boot()
    assert not plain.vmcs.controls()["enable_vpid"] and plain.vmcs.read("VPID") == 0


# ==== resource control ===========================================================================
#: VMCS fields the CPU writes at VM exit / consumes at VM entry, or the monitor rewrites between
#: entries (guest state, exit information, the injection, the launch state); EXEC_CONTROLS
#: changes only by the interrupt-window bit, checked separately
_WRITTEN = (set(VMCS_AREAS["guest-state"]) | set(VMCS_AREAS["exit-information"])
            | set(VMCS_AREAS["entry-controls"])
            | {"LAUNCH_STATE", "EXEC_CONTROLS", "CR0_READ_SHADOW"})


def run_contained(mode: str, source: str, budget: int = 200_000, **settings):
    """Boot, paint everything the guest must not touch, run, check that nothing changed.

    Painted (containment.py): the frames of the monitor region the allocator has not handed
    out, the rest of the VMCS page past its last field, and the guard region.  The VMCS fields
    nobody writes while the guest runs must keep their values.
    """
    mon = MODES[mode](cm.image(source), **settings)
    mon._boot()
    vmcs = VMCS_ADDRESS >> 2
    vmcs_tail = slice(vmcs + len(FIELDS), vmcs + 1024)         # past the last field
    with cm.paint_and_check(mon, sorted(mon.allocator.free_list), regions=[vmcs_tail],
                         containment=mon.check_containment):
        kept = {f: mon.vmcs.read(f) for f in FIELDS if f not in _WRITTEN}
        controls = mon.vmcs.read("EXEC_CONTROLS")
        mon._run(budget)
        result = mon.result()
    assert {f: mon.vmcs.read(f) for f in kept} == kept
    window = CONTROLS["interrupt_window_exiting"]
    assert mon.vmcs.read("EXEC_CONTROLS") & ~window == controls
    return mon, result


def _native(source):
    return run_technique(cm.image(source), "native")


@pytest.mark.parametrize("mode", MODES)
def test_guest_cannot_write_beyond_its_ram_with_paging_off(mode):
    source, faults = cm.write_beyond_ram([
        RAM,                        # first word after the guest's RAM
        RAM + 4092,
        RAM + MONITOR_BYTES,
        VMCS_ADDRESS,               # the VMCS's host address, as a guest address
        -MONITOR_BYTES,             # wraps to the top of the address space
    ])
    mon, r = run_contained(mode, source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert r.traps["general_protection"] == faults
    assert cm.same(_native(source), r)


@pytest.mark.parametrize("mode", MODES)
def test_guest_cannot_map_a_frame_beyond_its_ram(mode):
    # the frame right after the RAM, one a monitor region further, and the VMCS's host address
    source, faults = cm.map_beyond_ram([RAM, RAM + MONITOR_BYTES, VMCS_ADDRESS],
                                    [("st", RAM), ("ld", RAM + 8), ("st", RAM + 4096),
                                     ("st", RAM + 8192)])
    mon, r = run_contained(mode, source)
    assert r.stop == "halt" and r.registers[12] == faults
    assert r.traps["general_protection"] == faults
    assert cm.same(_native(source), r)


@pytest.mark.parametrize("mode", MODES)
def test_guest_ptbr_naming_the_monitors_tables_reaches_only_guest_memory(mode):
    probe = MODES[mode](cm.image("hlt"))
    probe._boot()
    # host address of the monitor's own top table: the shadow root or the EPT root
    root = probe.pager.phys.root if mode == "hw_shadow" else probe.nested.root
    assert root < MONITOR_BYTES
    source = cm.ptbr_names_host_address(root, VMCS_ADDRESS)
    mon, r = run_contained(mode, source)
    native = _native(source)
    assert cm.same(native, r)
    assert r.stop == native.stop


@pytest.mark.parametrize("mode", MODES)
def test_guest_that_disables_interrupts_and_spins_cannot_keep_the_monitor_out(mode):
    source = """
        cli
spin:   jmp  spin
"""
    mon, r = run_contained(mode, source, budget=300_000, time_slice=20_000)
    assert r.stop == "budget" and r.instructions == 300_000
    # external-interrupt exiting: the host timer takes the CPU back whatever the guest's IF
    assert r.monitor_events["EXTERNAL_INTERRUPT"] >= 300_000 // 20_000 - 1
    assert set(r.monitor_events) <= {"EXTERNAL_INTERRUPT", "EPT_VIOLATION",
                                     "EXCEPTION_NMI:page_fault"}
