"""The two-dimensional (nested paging) walk of kernel_sim.mmu and the ``pagewalk`` command.

Reference counts are checked against the formula of Bhargava et al. (ASPLOS 2008), and the order
of the physical addresses read is recomputed here, independently, from the tables in memory: the
recomputation below follows the paging rules of kernel_sim/state.py and the nested-entry format
of the kernel_sim.mmu docstring, and calls nothing of the code under test.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kernel_sim import mmu
from kernel_sim.lessons.pagewalk import (
    DATA_GPA,
    DEFAULT_GVA,
    GUEST_RAM_HOST,
    build_tables,
    pagewalk,
    run_walk,
)
from kernel_sim.state import EV_WALK_REFS, NUM_COUNTERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIRS = [(n, m) for n in range(1, 5) for m in range(0, 5)]
A, D = 32, 64                       # PTE accessed and dirty bits (kernel_sim/isa.py)


def recompute_reads(words, n, m, gptbr, eptp, gva):
    """The ordered (dimension, level, address) reads of a cold walk, and the final address.

    ``words`` is a snapshot of memory (uint32 words) taken before the walk.
    """
    reads = []

    def read(dimension, level, address):
        reads.append((dimension, level, address))
        return int(words[address // 4])

    def host(gpa):                  # one nested walk: m reads, top level first
        if m == 0:
            return gpa
        table = eptp - eptp % 4096
        for level in range(m, 0, -1):
            index = gpa // 2 ** (12 + 10 * (level - 1)) % 1024
            entry = read("nested", level, table + 4 * index)
            assert entry % 8 != 0, "the layout maps every page the walk needs"
            table = entry - entry % 4096
        return table + gpa % 4096

    table = gptbr - gptbr % 4096
    for level in range(n, 0, -1):
        index = gva // 2 ** (12 + 10 * (level - 1)) % 1024
        entry = read("guest", level, host(table + 4 * index))
        assert entry % 2 == 1
        table = entry - entry % 4096
    return reads, host(table + gva % 4096)


def walk_raw(setup, acc=0, cpl=0, gva=None):
    """Call the jitted nested walk directly; returns (code, references, info, steps)."""
    counters = np.zeros(NUM_COUNTERS, dtype=np.int64)
    info = np.zeros(mmu.WI_SIZE, dtype=np.int64)
    steps = np.zeros((32, mmu.STEP_COLS), dtype=np.int64)
    code = mmu.nested_walk(setup.guest_virtual if gva is None else gva, acc, cpl, setup.gptbr,
                           setup.guest_levels, setup.eptp, setup.nested_levels, setup.mem,
                           setup.mem_bytes, counters, info, steps)
    return int(code), int(counters[EV_WALK_REFS]), info, steps


@pytest.mark.parametrize("n, m", PAIRS)
def test_reference_count_follows_the_formula(n, m):
    r = pagewalk(n, m)
    want = (n + 1) * (m + 1) - 1 if m else n
    assert r.references == want == len(r.steps) == r.expected_references
    assert r.fault is None


def test_four_over_four_is_24_references_against_4_natively():
    assert pagewalk(4, 4).references == 24
    assert pagewalk(4, 0).references == 4


@pytest.mark.parametrize("n, m", PAIRS)
@pytest.mark.parametrize("gva", [DEFAULT_GVA, 0x0, 0x003FFFFC])
def test_every_step_matches_an_independent_recomputation(n, m, gva):
    setup = build_tables(n, m, gva)
    before = setup.mem.copy()
    reads, final = recompute_reads(before, n, m, setup.gptbr, setup.eptp, gva)
    r = run_walk(setup)
    assert [(s["dimension"], s["level"], s["address"]) for s in r.steps] == reads
    assert [s["value"] for s in r.steps] == [int(before[a // 4]) for _, _, a in reads]
    assert r.host_physical == final
    # the layout: the data page is guest-physical DATA_GPA, at GUEST_RAM_HOST + it when nested
    assert r.host_physical == (GUEST_RAM_HOST if m else 0) + DATA_GPA + gva % 4096
    assert r.guest_physical == DATA_GPA + gva % 4096


def test_one_over_one_by_hand():
    # Layout (kernel_sim/lessons/pagewalk.py): guest L1 table at guest-physical 0x10000, nested L1 table
    # at host 0x101000, guest-physical g at host 0x200000 + g, data at guest-physical 0x70000.
    # gva 0x123abc: guest index 0x123.  1) nested entry for gPA 0x1048c: 0x101000 + 4*0x10;
    # 2) the guest entry at host 0x21048c; 3) nested entry for gPA 0x70abc: 0x101000 + 4*0x70.
    r = pagewalk(1, 1, 0x123ABC)
    assert [s["address"] for s in r.steps] == [0x101040, 0x21048C, 0x1011C0]
    assert [s["dimension"] for s in r.steps] == ["nested", "guest", "nested"]
    assert (r.guest_physical, r.host_physical) == (0x70ABC, 0x270ABC)


@pytest.mark.parametrize("n, m", [(1, 0), (2, 1), (3, 3), (4, 4), (4, 0)])
@pytest.mark.parametrize("access", ["read", "write"])
def test_walk_sets_accessed_bits_in_guest_tables_and_dirty_on_write(n, m, access):
    setup = build_tables(n, m)
    before = setup.mem.copy()
    reads, _ = recompute_reads(before, n, m, setup.gptbr, setup.eptp, setup.guest_virtual)
    run_walk(setup, access)
    guest = [a for dim, _, a in reads if dim == "guest"]
    for address in guest:
        assert setup.mem[address // 4] == before[address // 4] | A | (
            D if access == "write" and address == guest[-1] else 0)
    changed = set(np.flatnonzero(setup.mem != before) * 4)
    assert changed == set(guest)          # nested entries are left as they were


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (4, 4)])
def test_unmapped_guest_physical_data_page_is_an_ept_violation(n, m):
    setup = build_tables(n, m)
    # Point the guest's leaf entry at guest-physical 0x60000, which the nested table leaves
    # unmapped (it maps only the guest tables and the data page).
    reads, _ = recompute_reads(setup.mem, n, m, setup.gptbr, setup.eptp, setup.guest_virtual)
    leaf = [a for dim, _, a in reads if dim == "guest"][-1]
    setup.mem[leaf // 4] = 0x60000 | 7
    r = run_walk(setup, "write")
    assert r.fault["kind"] == "ept_violation"
    assert r.fault["guest_physical"] == 0x60000 + DEFAULT_GVA % 4096
    qual = r.fault["qualification"]
    assert qual & mmu.EPTQ_FINAL and qual & mmu.EPTQ_WRITE and qual & mmu.EPTQ_GVA_VALID
    assert r.host_physical is None and "EPT violation at guest-physical 0x00060abc" in r.text()
    assert r.references == n * (m + 1) + m    # the whole walk was made: the last nested read missed


def test_unmapped_guest_table_page_is_an_ept_violation_on_a_table_entry():
    setup = build_tables(3, 2)
    # remove the nested mapping of the guest's level-2 table (guest-physical 0x20000)
    setup.mem[(0x101000 + 4 * 0x20) // 4] = 0
    code, refs, info, _ = walk_raw(setup)
    assert code == mmu.EPT_VIOLATION
    assert info[mmu.WI_FAULT_GPA] == 0x20000 + 4 * ((DEFAULT_GVA >> 22) & 0x3FF)
    assert info[mmu.WI_QUAL] & mmu.EPTQ_FINAL == 0 and info[mmu.WI_QUAL] & mmu.EPTQ_READ
    assert refs == 3 + 2                      # L3: 2 nested + 1 guest; L2: 2 nested, then stop


def test_read_only_nested_mapping_refuses_a_write_but_allows_a_read():
    setup = build_tables(2, 2)
    slot = (0x101000 + 4 * (DATA_GPA >> 12)) // 4
    setup.mem[slot] = (GUEST_RAM_HOST + DATA_GPA) | mmu.EPT_R
    code, _, info, _ = walk_raw(setup, acc=mmu.ACC_WRITE)
    assert code == mmu.EPT_VIOLATION
    assert info[mmu.WI_QUAL] == (mmu.EPTQ_WRITE | (mmu.EPT_R << mmu.EPTQ_PERM_SHIFT)
                                 | mmu.EPTQ_GVA_VALID | mmu.EPTQ_FINAL)
    code, _, info, _ = walk_raw(setup)
    assert code == GUEST_RAM_HOST + DATA_GPA + DEFAULT_GVA % 4096
    assert info[mmu.WI_VALUE] & 2 == 0       # the TLB-style value does not allow writes


@pytest.mark.parametrize("m", [0, 1, 4])
@pytest.mark.parametrize("acc, cpl, err", [(0, 0, 0), (mmu.ACC_WRITE, 3, 2 | 4),
                                           (mmu.ACC_FETCH, 3, 4 | 16)])
def test_unmapped_guest_virtual_page_is_a_guest_page_fault_with_native_code(m, acc, cpl, err):
    setup = build_tables(2, m)
    other = DEFAULT_GVA + 0x1000                 # the next page: no guest entry maps it
    code, refs, _, _ = walk_raw(setup, acc, cpl, gva=other)
    assert code == -1 - err                      # not present | write | user | fetch, by hand
    assert refs == 2 * (m + 1)                   # both guest levels read, each after m nested
    r = run_walk(build_tables(2, m, other), "read")    # mapped there: no fault
    assert r.fault is None
    if m == 0:                                   # the CPU's own walker agrees
        assert code == mmu.walk(other, acc, cpl, setup.gptbr, 2, setup.mem, setup.mem_bytes,
                                np.zeros(2, np.int64), 0, 1, np.zeros(NUM_COUNTERS, np.int64))


def test_guest_protection_fault_before_the_final_nested_walk():
    setup = build_tables(2, 2)
    reads, _ = recompute_reads(setup.mem, 2, 2, setup.gptbr, setup.eptp, DEFAULT_GVA)
    leaf = [a for dim, _, a in reads if dim == "guest"][-1]
    setup.mem[leaf // 4] &= ~2 & 0xFFFFFFFF      # clear W in the guest leaf
    code, refs, _, _ = walk_raw(setup, acc=mmu.ACC_WRITE)
    assert code == -1 - (1 | 2)                  # present | write
    assert refs == 2 * 3                         # no nested walk of the data page


def test_no_nesting_agrees_with_the_native_walker_on_random_tables():
    rng = np.random.default_rng(7)
    for trial in range(200):
        levels = int(rng.integers(1, 5))
        # 64 KiB = 16 frames of random entries, some pointing beyond memory (frames 16..19)
        mem = ((rng.integers(0, 20, size=1 << 14) << 12)
               | rng.integers(0, 128, size=1 << 14)).astype(np.uint32)
        top = 32 if trial % 10 == 0 else min(32, 10 * levels + 12)
        gva = int(rng.integers(0, 1 << top))
        acc = int(rng.choice([0, mmu.ACC_WRITE, mmu.ACC_FETCH]))
        cpl = int(rng.choice([0, 3]))
        ptbr = int(rng.integers(0, 16)) << 12
        a, b = mem.copy(), mem.copy()
        ca, cb = np.zeros(NUM_COUNTERS, np.int64), np.zeros(NUM_COUNTERS, np.int64)
        tlb = np.zeros(2, np.int64)
        native = int(mmu.walk(gva, acc, cpl, ptbr, levels, a, a.size * 4, tlb, 0, 1, ca))
        if native >= a.size * 4:
            native = mmu.BUS_ERROR
        info = np.zeros(mmu.WI_SIZE, np.int64)
        nested = int(mmu.nested_walk(gva, acc, cpl, ptbr, levels, 0, 0, b, b.size * 4, cb, info,
                                     np.zeros((0, mmu.STEP_COLS), np.int64)))
        assert nested == native, trial
        assert ca[EV_WALK_REFS] == cb[EV_WALK_REFS] == info[mmu.WI_STEPS], trial
        assert np.array_equal(a, b), trial
        if native >= 0:
            assert info[mmu.WI_VALUE] == tlb[1], trial


def test_guest_physical_beyond_a_one_level_nested_table_is_an_ept_violation():
    setup = build_tables(1, 1)
    leaf = 0x200000 + 0x10000 + 4 * ((DEFAULT_GVA >> 12) & 0x3FF)
    setup.mem[leaf // 4] = 0x00400000 | 7        # 4 MiB: one nested level covers 22 bits only
    code, _, info, _ = walk_raw(setup)
    assert code == mmu.EPT_VIOLATION and info[mmu.WI_FAULT_GPA] == 0x400000 + 0xABC


@pytest.mark.parametrize("kwargs, words", [
    (dict(guest_levels=0, nested_levels=1), "guest_levels must be between 1 and 4"),
    (dict(guest_levels=5, nested_levels=1), "guest_levels must be between 1 and 4"),
    (dict(guest_levels=2, nested_levels=5), "nested_levels must be between 0 and 4"),
    (dict(guest_levels=2, nested_levels=-1), "nested_levels must be between 0 and 4"),
    (dict(guest_levels=1, nested_levels=1, guest_virtual=1 << 22), "guest_virtual"),
    (dict(guest_levels=2, nested_levels=1, guest_virtual=1 << 32), "guest_virtual"),
    (dict(guest_levels=2, nested_levels=1, access="poke"), "access must be one of"),
    (dict(guest_levels="2", nested_levels=1), "guest_levels must be an integer"),
])
def test_bad_arguments_are_refused_with_a_message(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        pagewalk(**kwargs)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "kernel_sim", "pagewalk", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_json_has_references_and_ordered_steps():
    out = cli("--guest-levels", "4", "--nested-levels", "4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["references"] == 24 and len(data["steps"]) == 24
    for key in ("guest_levels", "nested_levels", "guest_virtual", "host_physical",
                "guest_physical", "expected_references", "fault"):
        assert key in data
    for step in data["steps"]:
        assert {"dimension", "level", "address", "value", "purpose"} <= set(step)
    setup = build_tables(4, 4)
    reads, final = recompute_reads(setup.mem, 4, 4, setup.gptbr, setup.eptp, DEFAULT_GVA)
    assert [(s["dimension"], s["level"], s["address"]) for s in data["steps"]] == reads
    assert data["host_physical"] == final


def test_cli_text_lists_each_step_and_native_walks():
    out = cli("--guest-levels", "2", "--nested-levels", "3")
    assert out.returncode == 0, out.stderr
    steps = [line.split() for line in out.stdout.splitlines() if line.split()[0].isdigit()]
    assert [int(s[0]) for s in steps] == list(range(1, (2 + 1) * (3 + 1)))
    assert [s[1] for s in steps] == ["nested"] * 3 + ["guest"] + ["nested"] * 3 + ["guest"] + \
        ["nested"] * 3
    assert "references: 11" in out.stdout and "host-physical 0x00270abc" in out.stdout
    native = cli("--guest-levels", "3", "--nested-levels", "0")
    assert native.returncode == 0 and "references: 3" in native.stdout
    assert "Native page walk" in native.stdout and " nested " not in native.stdout


@pytest.mark.parametrize("args, words", [
    (["--guest-levels", "5", "--nested-levels", "1"], "guest_levels must be between 1 and 4"),
    (["--guest-levels", "2", "--nested-levels", "7"], "nested_levels must be between 0 and 4"),
    (["--guest-levels", "two"], "invalid int value"),
    (["--guest-levels", "1", "--address", "0x400000"], "guest_virtual"),
    (["--address", "zz"], "invalid address value"),
])
def test_cli_bad_values_exit_2_without_traceback(args, words):
    out = cli(*args)
    assert out.returncode == 2 and words in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_setting_a_guest_accessed_or_dirty_bit_needs_nested_write_permission():
    # Map the guest's L1 table (guest-physical 0x10000) read-only in the nested table.
    setup = build_tables(2, 1)
    setup.mem[(0x101000 + 4 * 0x10) // 4] = (GUEST_RAM_HOST + 0x10000) | mmu.EPT_R
    leaf_gpa = 0x10000 + 4 * ((DEFAULT_GVA >> 12) & 0x3FF)
    code, _, info, _ = walk_raw(setup)             # a read, but A must be set in the leaf
    assert code == mmu.EPT_VIOLATION and info[mmu.WI_FAULT_GPA] == leaf_gpa
    assert info[mmu.WI_QUAL] == (mmu.EPTQ_WRITE | (mmu.EPT_R << mmu.EPTQ_PERM_SHIFT)
                                 | mmu.EPTQ_GVA_VALID)          # a table entry, not the page
    setup.mem[(GUEST_RAM_HOST + leaf_gpa) // 4] |= A             # A already set: reads pass
    code, _, _, _ = walk_raw(setup)
    assert code == GUEST_RAM_HOST + DATA_GPA + DEFAULT_GVA % 4096
    code, _, info, _ = walk_raw(setup, acc=mmu.ACC_WRITE)      # D is not set: writes refused
    assert code == mmu.EPT_VIOLATION and info[mmu.WI_FAULT_GPA] == leaf_gpa
    assert setup.mem[(GUEST_RAM_HOST + leaf_gpa) // 4] & D == 0
