"""The learner's ISA reference, generated from the instruction table in :mod:`kernel_sim.isa`
and the guest ABI's tables in :mod:`kernel_sim.abi` (ports, system calls).

In a notebook::

    from IPython.display import Markdown
    from kernel_sim.tools.isa_reference import isa_reference_markdown
    Markdown(isa_reference_markdown())

Because the text is built from :data:`kernel_sim.isa.INSTRUCTIONS`, it cannot drift from what the
assembler accepts and the CPU executes.  Every syntax example in it is assembled by the tests.
"""
from __future__ import annotations

import re

from .. import abi, isa
from ..asm import DIRECTIVES, FORMAT_SYNTAX, PSEUDO_INSTRUCTIONS

# One example operand list per format (registers and values chosen to read naturally).
_EXAMPLE_OPERANDS = {
    "none": "", "a": "r1", "ab": "r1, r2", "abc": "r1, r2, r3", "abi": "r1, r2, -4",
    "abu": "r1, r2, 0xff", "abs": "r1, r2, 3", "ai": "r1, -1", "au": "r1, 0x1234",
    "mem": "r1, [r2 + 8]", "br": "r1, r2, loop", "j": "loop", "in": "r1, ticks",
    "out": "console, r1", "rdcr": "r1, ptbr", "wrcr": "ptbr, r1", "u": "3",
}
_SPECIAL_EXAMPLES = {"PUSH": "push r1", "POP": "pop r1", "JR": "jr r1", "CALLR": "callr r1",
                     "INVLPG": "invlpg r1", "GETCPL": "getcpl r1", "RDTVB": "rdtvb r1",
                     "MOVI": "movi r1, -1", "CALL": "call function"}

def syntax_example(ins: isa.Instruction) -> str:
    """A line of assembly that uses *ins* (labels ``loop`` and ``function`` assumed)."""
    if ins.mnemonic in _SPECIAL_EXAMPLES:
        return _SPECIAL_EXAMPLES[ins.mnemonic]
    ops = _EXAMPLE_OPERANDS[ins.fmt]
    return f"{ins.mnemonic.lower()} {ops}".rstrip()


_table = abi.markdown_table


def isa_reference_markdown() -> str:
    """The whole ISA reference as Markdown (machine model, encoding, instructions, vectors,
    control registers, ports, system calls, assembler pseudo-instructions and directives)."""
    parts = []
    parts.append("# The kernel_sim ISA\n")
    parts.append(
        "**Machine model.** A 32-bit machine with sixteen general registers `r0`..`r15` "
        "(`sp` is `r15`; the stack grows down), byte addresses and 32-bit words: every load, "
        "store and fetch moves one aligned word. Instructions are one word. Branch and jump "
        "targets are relative to the *next* instruction: `target = pc + 4 + 4 * offset`. "
        "Opcode `0x00` is invalid on purpose, so running into zeroed memory faults.\n\n"
        "**Protection rings.** The current privilege level (CPL) is 0..3; ring 0 is the kernel. "
        "A *privileged* instruction outside ring 0 raises #GP (vector 13). For paging, rings "
        "0..2 are *supervisor* and ring 3 is *user*, as on x86.\n\n"
        "**Classes** (Popek & Goldberg, 1974): *innocuous* instructions are safe to run "
        "directly; *privileged* ones trap outside ring 0; *sensitive* ones read or change "
        "control state but do **not** trap (like x86 `POPF`, `PUSHF`, `SMSW`, `SIDT` before "
        "VT-x) unless the machine runs with `strict=True`; *trapping* ones always enter ring 0; "
        "*monitor* opcodes (`vmcall`, `callout`) are reserved for virtual-machine monitors and "
        "raise #UD on the bare machine, as x86 `VMCALL` does outside a VM. "
        "Sensitive but unprivileged here: "
        + ", ".join(f"`{m.lower()}`" for m in isa.popek_goldberg_violations()) + ".\n\n"
        "**Cycles** are model assumptions (plausible relative sizes), not measurements.\n")
    parts.append("## Encoding\n")
    parts.append(
        "```\n"
        "31      24 23  20 19  16 15                0\n"
        "+---------+------+------+-------------------+\n"
        "| opcode  |  a   |  b   |      imm16        |\n"
        "+---------+------+------+-------------------+\n"
        "```\n"
        "Three-register instructions take register `c` from `imm[3:0]`. `jmp` and `call` use "
        "the 24 bits below the opcode as a signed word offset.\n")
    parts.append("## Instructions\n")
    rows = [[f"`{i.mnemonic.lower()}`", f"0x{i.opcode:02X}", f"`{syntax_example(i)}`", i.cls,
             i.sensitivity or "-", str(i.cycles), i.summary] for i in isa.INSTRUCTIONS]
    parts.append(_table(["mnemonic", "opcode", "example", "class", "sensitivity", "cycles",
                         "summary"], rows) + "\n")
    parts.append("Operand formats: " + "; ".join(
        f"`{fmt}` {FORMAT_SYNTAX[fmt] or '(no operands)'}" for fmt in isa.FORMATS)
        + ". `simm16` is -32768..32767, `uimm16` 0..65535, `shift` 0..31; a branch `target` "
        "must lie within ±32768 words (±8 Mi words for `jmp`/`call`).\n")
    parts.append("## Pseudo-instructions\n")
    parts.append(_table(["name", "operands", "meaning"],
                        [[f"`{n}`", f"`{s}`", m] for n, (s, m) in PSEUDO_INSTRUCTIONS.items()])
                 + "\n")
    parts.append("## Trap vectors\n")
    parts.append(
        "On a trap the CPU enters ring 0 (taking `sp` from `ksp` if it came from ring > 0), "
        "pushes old sp, old FLAGS, old CPL, the return pc and an error code, clears IF and "
        "jumps to the handler whose address is the word at `tvb + 4 * vector`. `iret` pops "
        "that frame.\n")
    parts.append(_table(["vector", "name"],
                        [[str(v), n] for v, n in sorted(isa.VECTOR_NAMES.items())]) + "\n")
    parts.append("## Control registers (`rdcr` / `wrcr`)\n")
    parts.append(_table(["name", "number", "meaning"],
                        [[f"`{n}`", str(v), isa.CR_DESCRIPTIONS[n]]
                         for n, v in sorted(isa.CR_NAMES.items(), key=lambda kv: kv[1])]) + "\n")
    parts.append("## I/O ports (`in` / `out`)\n")
    parts.append(abi.port_table_markdown() + "\n")
    parts.append("## System calls of the course's guest kernels\n")
    parts.append("`syscall` traps through vector 0x80. Number in `r0`, arguments in `r1`..`r3`, "
                 "result in `r0`. The bare machine does not interpret them.\n")
    parts.append(abi.syscall_table_markdown() + "\n")
    parts.append("## Assembler directives\n")
    rows = []
    for d in DIRECTIVES:
        syntax, meaning = DIRECTIVES[d].split(" -- ", 1)
        rows.append([f"`{syntax}`", re.sub(r"(\\[@A-Z]+)", r"`\1`", meaning)])
    parts.append(_table(["directive", "meaning"], rows) + "\n")
    parts.append("Comments start with `;`. Labels end with `:`; `NAME = expr` defines a constant. "
                 "Numbers: `42`, `0x2a`, `0b101010`, `'*'`. Expressions: `+ - * / % << >> & | ^ "
                 "~`, comparisons `== != < <= > >=` and `&& || !` (1 or 0), parentheses, and `.` "
                 "for the current address.\n")
    return "\n".join(parts)
