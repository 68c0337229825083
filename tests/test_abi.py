"""The guest ABI is defined once (kernel_sim/abi.py) and every other copy is generated from it.

* the committed assembly include ``guests/abi.s`` and ``course/isa_reference.md`` are what the
  generator makes now (``python -m kernel_sim.tools.generate --check``);
* the assembled kernel and user library see the same numbers as Python (word indices in
  Python, byte offsets in assembly);
* no hand-written copy is left: no guest source other than the generated one defines an
  ABI constant, and the old Python names are the ABI's objects, not equal copies.
"""
from __future__ import annotations

import re

import pytest

from kernel_sim import abi, guest, isa, state
from kernel_sim.guest import GUEST_DIR, kernel_program, user_program
from kernel_sim.monitors import paravirt
from kernel_sim.tools import generate

ASM_NAMES = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", abi.assembly_include(), re.M))


def test_generated_files_are_up_to_date():
    assert generate.stale_files() == []
    assert generate.main(["--check"]) == 0
    assert generate.ABI_INCLUDE.read_text() == abi.assembly_include()


def test_check_reports_a_stale_include(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "abi.s"
    stale.write_text(abi.assembly_include().replace("SYS_GETPID        = 2", "SYS_GETPID = 3"))
    monkeypatch.setattr(generate, "generated_files",
                        lambda: {stale: abi.assembly_include})
    monkeypatch.setattr(generate, "PACKAGE", tmp_path / "kernel_sim")  # shown from its parent
    assert generate.main(["--check"]) == 1
    assert "stale: abi.s" in capsys.readouterr().err
    assert generate.main([]) == 0 and stale.read_text() == abi.assembly_include()


def test_the_include_header_says_it_is_generated():
    head = abi.assembly_include().split("\n")[:3]
    assert any("generated from kernel_sim/abi.py" in line for line in head)
    assert any("DO NOT EDIT" in line for line in head)


@pytest.mark.parametrize("paravirt_build", [False, True])
def test_the_kernel_sees_the_abi_numbers(paravirt_build):
    sym = kernel_program(paravirt_build).symbols
    for c in abi.HYPERCALL_TABLE:
        assert sym[f"HC_{c.name.upper()}"] == c.number
    for c in abi.SYSCALL_TABLE:
        assert sym[f"SYS_{c.name.upper()}"] == c.number
    # word indices in Python are byte offsets in assembly
    for f in abi.BOOT_INFO + abi.SHARED_INFO:
        assert sym[f.name] == 4 * f.value
    assert sym["BLK_READ"] == isa.BLK_READ and sym["KERNEL_BASE"] == sym["boot"]


def test_user_programs_see_the_abi_numbers():
    sym = user_program("syscall").symbols
    assert {n: sym[f"SYS_{n.upper()}"] for n in abi.SYSCALL_NUMBERS} == abi.SYSCALL_NUMBERS
    assert sym["HEAP_BASE"] == abi.HEAP_BASE and sym["DISK_MAGIC"] == abi.DISK_MAGIC


def test_no_guest_source_defines_an_abi_constant_by_hand():
    sources = [p for p in GUEST_DIR.rglob("*.s") if p.name != "abi.s"]
    assert len(sources) > 20      # kernel.s, kernel/*.s, user/*.s, ring_probe.s
    for path in sources:
        for n, line in enumerate(path.read_text().split("\n"), 1):
            m = re.match(r"\s*(?:\.equ\s+)?([A-Za-z_]\w*)\s*(?:=|,)", line)
            # (ring_probe.s is notebook 02's separate probe kernel, with its own memory map)
            if m and not line.lstrip().startswith(";") and path.name != "ring_probe.s":
                assert m.group(1) not in ASM_NAMES, f"{path.name}:{n} defines {m.group(1)}"
                assert not re.match(r"(SYS|HC|BI|SI)_", m.group(1)), f"{path.name}:{n}"


def test_no_guest_kernel_source_copies_a_machine_constant():
    """PAGE_SIZE, PTE_*, VEC_* ... come from the generated machine.s (kernel_sim/isa.py)."""
    names = {n for _, group in isa.ASSEMBLY_CONSTANTS for n in group}
    assert {"PAGE_SIZE", "PTE_W", "VEC_PF", "FLAG_IF"} <= names
    kernel = [GUEST_DIR / "kernel.s", *sorted((GUEST_DIR / "kernel").glob("*.s")),
              *sorted((GUEST_DIR / "user").glob("*.s"))]
    for path in kernel:
        for n, line in enumerate(path.read_text().split("\n"), 1):
            m = re.match(r"\s*(?:\.equ\s+)?([A-Za-z_]\w*)\s*(?:=|,)", line)
            assert not (m and m.group(1) in names), f"{path.name}:{n} defines {m.group(1)}"
    text = (GUEST_DIR / "machine.s").read_text()
    for name in names:                       # and the include gives each its isa.py value
        m = re.search(rf"^{name}\s*=\s*(\S+)", text, re.M)
        assert m and int(m.group(1), 0) == getattr(isa, name), name


def test_the_old_python_names_are_the_abi_s_objects():
    """An import is not a copy: every old name is the very object abi.py defines."""
    assert isa.SYSCALLS == tuple((c.number, c.name, c.args) for c in abi.SYSCALL_TABLE)
    assert guest.SYSCALL_NUMBERS is abi.SYSCALL_NUMBERS
    assert guest.HYPERCALLS is abi.HYPERCALLS is paravirt.HYPERCALLS
    assert isa.PORT_NAMES is abi.PORT_NAMES
    assert (isa.PORT_CONSOLE, isa.PORT_BLK_COMMAND) == (abi.PORT_CONSOLE, abi.PORT_BLK_COMMAND)
    assert (state.BLK_OK, state.BLK_BAD_ADDRESS, state.BLK_BAD_COMMAND) == (0, 1, 2)
    assert state.BLK_SECTOR_WORDS == abi.SECTOR_WORDS == abi.SECTOR_BYTES // 4
    assert (paravirt.BI_SHINFO, paravirt.SI_CR2) == (abi.BI_SHINFO, abi.SI_CR2)
    for name in ("BI_MAGIC", "BI_DONE", "BOOT_MAGIC", "USER_BASE", "KERNEL_BASE"):
        assert getattr(guest, name) == getattr(abi, name)


def test_every_table_row_is_a_module_constant_and_names_are_unique():
    rows = (abi.LAYOUT + abi.MAGIC + abi.BOOT_INFO + abi.DISK + abi.SHARED_INFO + abi.PARAVIRT
            + abi.BLK_COMMANDS + abi.BLK_STATUS)
    assert len({f.name for f in rows}) == len(rows)
    for f in rows:
        assert getattr(abi, f.name) == f.value
    for table in (abi.SYSCALL_TABLE, abi.HYPERCALL_TABLE):
        assert [c.number for c in table] == list(range(len(table)))
    assert len(ASM_NAMES) == len(re.findall(r"^[A-Z_]\w*\s*=", abi.assembly_include(), re.M))


def test_the_docs_show_the_abi_tables():
    from pathlib import Path

    reference = (Path(__file__).parent.parent / "course" / "isa_reference.md").read_text()
    assert abi.syscall_table_markdown() in reference
    assert abi.port_table_markdown() in reference
    for f in abi.BLK_STATUS:                     # the status codes reach the port table
        assert f"{f.value} {f.doc}" in abi.port_descriptions()["blk_command"]
    # notebook 06 shows porting.hypercall_table_html(), built from abi.HYPERCALL_TABLE
    from kernel_sim.lessons import porting
    html = porting.hypercall_table_html()
    for c in abi.HYPERCALL_TABLE:
        assert f"<td>{c.number}</td><td><code>{c.name}</code></td>" in html
