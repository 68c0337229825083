"""One cold TLB miss, step by step: a native page walk, or a two-dimensional (nested) one.

``python -m kernel_sim pagewalk --guest-levels N --nested-levels M`` builds page tables in a
small host memory, runs one walk through the jitted MMU (:func:`kernel_sim.mmu.nested_walk`,
which records every memory reference it makes) and prints the references in order.  With
``M = 0`` there is no nesting: the walk is the CPU's own (:func:`kernel_sim.mmu.walk`).

Why nested paging costs more on a miss
--------------------------------------
A guest's page tables hold *guest-physical* addresses.  Before the hardware can read a guest
entry it must find where that guest-physical address lives in host memory -- a walk of the
nested table.  So each of the n guest levels costs m nested reads plus the guest read itself,
and the guest-physical address of the data needs one more nested walk at the end:
``n*(m+1) + m = (n+1)(m+1) - 1`` references (24 for 4 over 4), against n natively.

Memory layout built by :func:`build_tables` (all addresses chosen to be easy to read)
-------------------------------------------------------------------------------------
================================  ===================================================
guest level-L table               guest-physical ``L << 16``: L4 0x40000 ... L1 0x10000
the data page                     guest-physical ``DATA_GPA`` = 0x70000
guest-physical page ``g``         host-physical ``GUEST_RAM_HOST + g`` (0x200000 + g)
nested level-L table              host-physical ``NESTED_TABLES_HOST + L * 0x1000``
                                  (L1 0x101000 ... L4 0x104000)
================================  ===================================================

The guest root (``gptbr``) is its top table; ``eptp`` is the nested table's top table.  The
nested table maps only the guest-physical pages in use (the guest tables and the data page):
any other guest-physical page is unmapped, and touching it is an EPT violation.  Guest entries
are present, writable and user (``P|W|U``); nested entries grant read, write and execute.
Without nesting (``M = 0``) the same guest tables sit at those addresses in physical memory.
Guest-virtual addresses are 32-bit, so in a 3- or 4-level table the top one or two indices are
always 0 (the two top levels exist to show their cost, as on a machine with wider addresses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import mmu
from ..machine import check_int
from ..state import EV_WALK_REFS, NUM_COUNTERS

DEFAULT_GVA = 0x00123ABC        #: the guest-virtual address walked by default (page 0x123)
DATA_GPA = 0x00070000           #: guest-physical page the default address maps to
GUEST_RAM_HOST = 0x00200000     #: host-physical address of guest-physical 0
NESTED_TABLES_HOST = 0x00100000  #: nested level-L table at this + L * 0x1000
MEMORY_BYTES = 0x00300000       #: host memory: 3 MiB
GUEST_PTE = mmu.PTE_P | mmu.PTE_W | mmu.PTE_U
ACCESSES = {"read": 0, "write": mmu.ACC_WRITE, "fetch": mmu.ACC_FETCH}


def guest_table_gpa(level: int) -> int:
    """Guest-physical address of the guest's level-``level`` table (level 1 is the leaf)."""
    return level << 16


def nested_table_hpa(level: int) -> int:
    """Host-physical address of the nested level-``level`` table."""
    return NESTED_TABLES_HOST + level * 0x1000


def expected_references(guest_levels: int, nested_levels: int) -> int:
    """References of a cold walk: ``(n+1)(m+1) - 1`` nested, ``n`` native (m = 0 gives n too)."""
    return (guest_levels + 1) * (nested_levels + 1) - 1


@dataclass
class WalkSetup:
    """Page tables in a host memory, ready for :func:`run_walk` (edit ``mem`` to experiment)."""
    guest_levels: int
    nested_levels: int
    guest_virtual: int
    mem: np.ndarray                       # uint32 words of host memory
    gptbr: int                            # guest-physical address of the guest root table
    eptp: int                             # host-physical address of the nested root (0: none)
    guest_tables: dict[int, int] = field(default_factory=dict)   # level -> guest-physical
    nested_tables: dict[int, int] = field(default_factory=dict)  # level -> host-physical
    data_gpa: int = DATA_GPA

    @property
    def mem_bytes(self) -> int:
        return self.mem.shape[0] * 4

    def host_of(self, gpa: int) -> int:
        """Where guest-physical ``gpa`` lives in host memory in this layout."""
        return gpa + GUEST_RAM_HOST if self.nested_levels else gpa

    def read(self, hpa: int) -> int:
        return int(self.mem[hpa >> 2])

    def write(self, hpa: int, value: int) -> None:
        self.mem[hpa >> 2] = value


def build_tables(guest_levels: int, nested_levels: int,
                 guest_virtual: int = DEFAULT_GVA) -> WalkSetup:
    """Build the layout of the module docstring, mapping ``guest_virtual`` to ``DATA_GPA``."""
    n = check_int("guest_levels", guest_levels, 1, 4)
    m = check_int("nested_levels", nested_levels, 0, 4)
    top = min(32, 10 * n + 12)
    gva = check_int("guest_virtual", guest_virtual, 0, (1 << top) - 1)
    setup = WalkSetup(n, m, gva, np.zeros(MEMORY_BYTES // 4, dtype=np.uint32),
                      gptbr=guest_table_gpa(n), eptp=nested_table_hpa(m) if m else 0)
    # guest dimension: level L's entry for gva points to level L-1's table; level 1 to the data
    for level in range(n, 0, -1):
        setup.guest_tables[level] = guest_table_gpa(level)
        idx = (gva >> (12 + 10 * (level - 1))) & 0x3FF
        target = guest_table_gpa(level - 1) if level > 1 else DATA_GPA
        setup.write(setup.host_of(guest_table_gpa(level)) + 4 * idx, target | GUEST_PTE)
    if m:
        # nested dimension: one table per level (every guest-physical address used is below
        # 4 MiB, so the upper indices are all 0); the leaf maps each page in use
        for level in range(m, 1, -1):
            setup.nested_tables[level] = nested_table_hpa(level)
            setup.write(nested_table_hpa(level), nested_table_hpa(level - 1) | mmu.EPT_RWX)
        setup.nested_tables[1] = nested_table_hpa(1)
        for gpa in list(setup.guest_tables.values()) + [DATA_GPA]:
            setup.write(nested_table_hpa(1) + 4 * ((gpa >> 12) & 0x3FF),
                        (gpa + GUEST_RAM_HOST) | mmu.EPT_RWX)
    return setup


@dataclass
class PageWalk:
    """The outcome of one cold walk: every reference in order, and where the address went."""
    guest_levels: int
    nested_levels: int
    guest_virtual: int
    access: str
    references: int
    steps: list[dict]
    guest_physical: int | None
    host_physical: int | None
    fault: dict | None

    @property
    def expected_references(self) -> int:
        return expected_references(self.guest_levels, self.nested_levels)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("guest_levels", "nested_levels", "guest_virtual",
                                           "access", "references", "guest_physical",
                                           "host_physical", "fault")}
        d["expected_references"] = self.expected_references
        d["steps"] = [dict(s) for s in self.steps]
        return d

    def text(self) -> str:
        n, m = self.guest_levels, self.nested_levels
        if m:
            head = (f"Nested page walk of guest-virtual {self.guest_virtual:#010x} ({self.access}):"
                    f" a {n}-level guest table over a {m}-level nested table")
        else:
            head = (f"Native page walk of virtual {self.guest_virtual:#010x} ({self.access}):"
                    f" a {n}-level page table, no nesting")
        lines = [head, f"{'step':>4}  {'dimension':<9}  {'level':>5}  {'address':<10}  "
                       f"{'value':<10}  purpose"]
        for i, s in enumerate(self.steps, 1):
            lines.append(f"{i:>4}  {s['dimension']:<9}  {s['level']:>5}  {s['address']:#010x}  "
                         f"{s['value']:#010x}  {s['purpose']}")
        if m:
            lines.append(f"references: {self.references}  (formula (n+1)(m+1)-1 = ({n}+1)({m}+1)-1"
                         f" = {self.expected_references}; a native {n}-level walk makes {n})")
        else:
            lines.append(f"references: {self.references}  (one per level: {n})")
        if self.fault:
            lines.append("fault: " + self.fault["description"])
        elif m:
            lines.append(f"guest-virtual {self.guest_virtual:#010x} -> guest-physical "
                         f"{self.guest_physical:#010x} -> host-physical {self.host_physical:#010x}"
                         " (the data access itself is not counted)")
        else:
            lines.append(f"virtual {self.guest_virtual:#010x} -> physical "
                         f"{self.host_physical:#010x} (the data access itself is not counted)")
        return "\n".join(lines)


def _describe_fault(code: int, info: np.ndarray) -> dict | None:
    if code >= 0:
        return None
    if code == mmu.EPT_VIOLATION:
        gpa, qual = int(info[mmu.WI_FAULT_GPA]), int(info[mmu.WI_QUAL])
        what = "the data page" if qual & mmu.EPTQ_FINAL else "a guest page-table entry"
        return {"kind": "ept_violation", "guest_physical": gpa, "qualification": qual,
                "description": f"EPT violation at guest-physical {gpa:#010x} while accessing "
                               f"{what} (qualification {qual:#x}); the monitor handles it"}
    if code == mmu.BUS_ERROR:
        return {"kind": "bus_error", "description": "a table or page lies beyond host memory"}
    err = -1 - code
    bits = [name for bit, name in ((mmu.PF_PRESENT, "protection"), (mmu.PF_WRITE, "write"),
                                   (mmu.PF_USER, "user"), (mmu.PF_FETCH, "fetch")) if err & bit]
    if not err & mmu.PF_PRESENT:
        bits.insert(0, "not present")
    return {"kind": "page_fault", "error_code": err,
            "description": f"guest page fault, error code {err:#x} ({', '.join(bits)}); "
                           "the guest's own handler deals with it"}


def _purpose(setup: WalkSetup, row) -> str:
    dim, level, gpa, target = (int(row[mmu.STEP_DIM]), int(row[mmu.STEP_LEVEL]),
                               int(row[mmu.STEP_GPA]), int(row[mmu.STEP_FOR]))
    if dim == mmu.STEP_NESTED:
        what = f"guest L{target} entry" if target else "the data"
        return f"nested L{level} entry: where is guest-physical {gpa:#010x} ({what})?"
    idx = (setup.guest_virtual >> (12 + 10 * (level - 1))) & 0x3FF
    if setup.nested_levels:
        return f"guest L{level} entry, index {idx:#x}, at guest-physical {gpa:#010x}"
    return f"L{level} entry, index {idx:#x}"


def run_walk(setup: WalkSetup, access: str = "read", cpl: int = 0) -> PageWalk:
    """Run one cold walk of ``setup.guest_virtual`` through the jitted MMU (changes ``setup.mem``:
    A/D bits).  ``access`` is ``read``, ``write`` or ``fetch``; ``cpl`` the guest's ring."""
    if access not in ACCESSES:
        raise ValueError(f"access must be one of {', '.join(ACCESSES)}, got {access!r}")
    cpl = check_int("cpl", cpl, 0, 3)
    acc = ACCESSES[access]
    n, m = setup.guest_levels, setup.nested_levels
    counters = np.zeros(NUM_COUNTERS, dtype=np.int64)
    info = np.zeros(mmu.WI_SIZE, dtype=np.int64)
    steps = np.zeros(((n + 1) * (m + 1) + 8, mmu.STEP_COLS), dtype=np.int64)
    native_mem = setup.mem.copy() if m == 0 else None
    code = int(mmu.nested_walk(setup.guest_virtual, acc, cpl, setup.gptbr, n, setup.eptp, m,
                               setup.mem, setup.mem_bytes, counters, info, steps))
    references = int(counters[EV_WALK_REFS])
    if m == 0:
        # No nesting: the CPU's own walker is the authority; the recorded steps must match it.
        native_counters = np.zeros(NUM_COUNTERS, dtype=np.int64)
        tlb = np.zeros(2, dtype=np.int64)
        native = int(mmu.walk(setup.guest_virtual, acc, cpl, setup.gptbr, n, native_mem,
                              setup.mem_bytes, tlb, 0, 1, native_counters))
        if native >= setup.mem_bytes:
            native = mmu.BUS_ERROR
        if (native != code or int(native_counters[EV_WALK_REFS]) != references
                or not np.array_equal(native_mem, setup.mem)):
            raise RuntimeError("the recorded walk disagrees with the CPU's walker "
                               f"(result {code} vs {native}, references {references} vs "
                               f"{int(native_counters[EV_WALK_REFS])})")
    rows = steps[:min(int(info[mmu.WI_STEPS]), steps.shape[0])]
    out_steps = [{"dimension": "nested" if r[mmu.STEP_DIM] == mmu.STEP_NESTED else "guest",
                  "level": int(r[mmu.STEP_LEVEL]), "address": int(r[mmu.STEP_ADDR]),
                  "value": int(r[mmu.STEP_VALUE]), "guest_physical": int(r[mmu.STEP_GPA]),
                  "purpose": _purpose(setup, r)} for r in rows]
    ok = code >= 0
    return PageWalk(n, m, setup.guest_virtual, access, references, out_steps,
                    guest_physical=int(info[mmu.WI_GPA]) if ok else None,
                    host_physical=code if ok else None, fault=_describe_fault(code, info))


def pagewalk(guest_levels: int, nested_levels: int, guest_virtual: int = DEFAULT_GVA,
             access: str = "read") -> PageWalk:
    """Build the tables (:func:`build_tables`) and run one cold walk (:func:`run_walk`)."""
    return run_walk(build_tables(guest_levels, nested_levels, guest_virtual), access)
