"""What porting the guest kernel to the paravirtual interface changed (notebook 06).

Paravirtualization modifies the guest's *source code*.  The course's kernel (``guests/kernel.s``
and the parts it includes, ``guests/kernel/*.s``) is one source with two builds: everything
that differs lies inside ``.if PARAVIRT`` blocks, some of them in the macros of
``kernel/macros.s`` (``irq_disable``, ``set_pte``, ``k_iret`` ...), so the
hundreds of places that *use* those macros did not change at all.  This module reads the source
and measures the port, the way Barham et al. (2003) counted the lines they changed to port Linux
(2,995) and Windows XP (4,620) to Xen:

* :func:`paravirt_blocks` -- every ``.if PARAVIRT`` block, with the lines of its PARAVIRT branch
  and of its native (``.else``) branch;
* :func:`porting_cost` -- how many code lines are PARAVIRT-only or native-only, against the
  whole kernel;
* :func:`replacements` -- the native instruction(s) and what the PARAVIRT build does instead,
  block by block (``wrcr ptbr`` -> hypercall ``new_baseptr``); :func:`replaced_by` asks it
  for one instruction;
* :func:`hypercall_table` -- the hypercall ABI (:data:`kernel_sim.abi.HYPERCALL_TABLE`), with
  the native code each hypercall replaces;
* :func:`masking_counts` -- interrupt masking natively (CLI, STI, PUSHF, POPF: instructions a
  trap-and-emulate monitor must catch) against the PARAVIRT kernel's plain stores to the shared
  info page.

A *code line* is a line with something on it besides a comment: an instruction, a label, a
directive or a macro use.  Blank and comment-only lines are not counted, and neither are the
``.if`` / ``.else`` / ``.endif`` lines themselves.  The kernel's source is the files
:func:`kernel_sources` lists; the generated ABI constants (``guests/abi.s``) are not counted.
Every function also takes one source text instead (``source=``), for experiments.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import lru_cache

#: Barham et al., "Xen and the Art of Virtualization", SOSP 2003: lines changed to port each
#: guest OS to Xen, and what Linux's share was of its x86 code.
XEN_LINUX_LINES = 2995
XEN_LINUX_PERCENT = 1.36
XEN_XP_LINES = 4620

Line = tuple[int, str]          # (1-based line number, text without its comment)


_INCLUDE = re.compile(r'^\s*\.include\s+"([^"]+)"', re.I)


def kernel_sources() -> list[tuple[str, str]]:
    """``(file name, text)`` of the kernel's sources in assembly order: ``kernel.s`` and the
    ``kernel/*.s`` files it includes (not the generated ``abi.s``)."""
    from ..guest import GUEST_DIR
    top = (GUEST_DIR / "kernel.s").read_text(encoding="utf-8")
    out = [("kernel.s", top)]
    for line in top.split("\n"):
        m = _INCLUDE.match(line)
        if m and m.group(1) != "abi.s":
            out.append((m.group(1), (GUEST_DIR / m.group(1)).read_text(encoding="utf-8")))
    return out


def _sources(source: str | None) -> list[tuple[str, str]]:
    return kernel_sources() if source is None else [("", source)]


def strip_comment(line: str) -> str:
    """``line`` without its ``;`` comment (a ``;`` inside quotes is kept), right-stripped."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            return line[:i].rstrip()
    return line.rstrip()


@dataclass
class Block:
    """One ``.if PARAVIRT`` block of the kernel source."""

    start: int                      #: line of ``.if PARAVIRT``
    end: int                        #: line of its ``.endif``
    macro: str | None            #: the macro it sits in, or None
    paravirt: list[Line] = field(default_factory=list)   #: code lines of the PARAVIRT branch
    native: list[Line] = field(default_factory=list)     #: code lines of the .else branch
    file: str = ""                  #: the kernel file it is in ("" for a source text)


def paravirt_blocks(source: str | None = None) -> list[Block]:
    """Every ``.if PARAVIRT`` block of ``source`` (default: the kernel's files), in source order.

    Conditionals on other names are followed (they may nest) but not reported.  Raises
    ``ValueError`` for an ``.else``/``.endif`` without its ``.if``, or an ``.if`` never closed.
    """
    return [b for name, text in _sources(source) for b in _file_blocks(text, name)]


def _file_blocks(text: str, name: str) -> list[Block]:
    where = f"{name}: " if name else ""
    blocks: list[Block] = []
    stack: list = []                # [block or None, in_else] per open conditional
    macro = None
    for number, raw in enumerate(text.split("\n"), 1):
        code = strip_comment(raw).strip()
        words = code.split()
        first = words[0].lower() if words else ""
        if first == ".macro":
            macro = words[1].rstrip(",") if len(words) > 1 else "?"
        elif first == ".endm":
            macro = None
        if first in (".if", ".ifdef", ".ifndef"):
            is_pv = first == ".if" and code[3:].strip() == "PARAVIRT"
            block = Block(number, -1, macro, file=name) if is_pv else None
            stack.append([block, False])
            continue
        if first in (".else", ".endif"):
            if not stack:
                raise ValueError(f"{where}line {number}: {first} without .if")
            if first == ".else":
                stack[-1][1] = True
            else:
                block, _ = stack.pop()
                if block is not None:
                    block.end = number
                    blocks.append(block)
            continue
        if not code:
            continue
        for block, in_else in stack:   # a line counts for every PARAVIRT block around it
            if block is not None:
                (block.native if in_else else block.paravirt).append((number, code))
    if stack:
        raise ValueError(f"{where}an .if is never closed by .endif")
    return sorted(blocks, key=lambda b: b.start)


@dataclass(frozen=True)
class PortingCost:
    """What the port changed, in lines of the kernel's source (see the module docstring)."""

    total_lines: int            #: every line of the files
    code_lines: int             #: lines with code (no blank or comment-only lines)
    paravirt_lines: int         #: code lines only the PARAVIRT build assembles
    native_lines: int           #: code lines only the native build assembles
    blocks: int                 #: number of .if PARAVIRT blocks
    macro_blocks: int           #: ... of them inside macros

    @property
    def changed_lines(self) -> int:
        """Code lines that differ between the two builds (PARAVIRT-only + native-only)."""
        return self.paravirt_lines + self.native_lines

    @property
    def percent(self) -> float:
        """changed_lines as a percentage of code_lines."""
        return 100.0 * self.changed_lines / self.code_lines

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, this kernel, Xen's Linux port) rows for a table."""
        return [("lines changed", f"{self.changed_lines:,}",
                 f"{XEN_LINUX_LINES:,} (Windows XP: {XEN_XP_LINES:,})"),
                ("share of the code", f"{self.percent:.1f}%",
                 f"{XEN_LINUX_PERCENT}% of the x86 code")]


def _outermost(blocks: list[Block]) -> list[Block]:
    out, end = [], (None, 0)
    for b in blocks:
        if b.file != end[0] or b.start > end[1]:
            out.append(b)
            end = (b.file, b.end)
    return out


def porting_cost(source: str | None = None) -> PortingCost:
    """Count the port (default: the kernel).  Nested blocks are counted once."""
    total = code = 0
    for _, text in _sources(source):
        lines = text.split("\n")
        total += len(lines) - (1 if text.endswith("\n") else 0)
        code += sum(1 for ln in lines if strip_comment(ln).strip()
                    and strip_comment(ln).split()[0].lower() not in (".if", ".else", ".endif",
                                                                     ".ifdef", ".ifndef"))
    blocks = paravirt_blocks(source)
    top = _outermost(blocks)
    return PortingCost(total_lines=total,
                       code_lines=code,
                       paravirt_lines=sum(len(b.paravirt) for b in top),
                       native_lines=sum(len(b.native) for b in top),
                       blocks=len(blocks), macro_blocks=sum(1 for b in blocks if b.macro))


def macro_uses(source: str | None = None) -> dict[str, int]:
    """{macro with a PARAVIRT block: how many lines outside macro definitions use it}.

    These call sites were not edited by the port: the macro changed instead.
    """
    names = sorted({b.macro for b in paravirt_blocks(source) if b.macro})
    uses = dict.fromkeys(names, 0)
    in_macro = False
    for raw in "\n".join(text for _, text in _sources(source)).split("\n"):
        words = strip_comment(raw).split()
        if not words:
            continue
        if words[0] == ".macro":
            in_macro = True
        elif words[0] == ".endm":
            in_macro = False
        elif not in_macro and words[0] in uses:
            uses[words[0]] += 1
    return uses


# ---- what replaced what ----------------------------------------------------------------------
_HC = re.compile(r"^(?:vmcall|hcall_ok)\s+HC_(\w+)$", re.I)


def _hypercall(code: str) -> str | None:
    m = _HC.match(code)
    return m.group(1).lower() if m else None


def _native_significant(code: str) -> bool:
    from .. import isa
    word = code.split()[0].upper()
    ins = isa.BY_MNEMONIC.get(word)
    return (ins is not None and (ins.privileged or ins.cls == isa.SENSITIVE)) or \
        word.lower() in ("irq_save", "irq_restore")


def _pv_significant(code: str) -> bool:
    return _hypercall(code) is not None or re.match(r"^call\s+pv_\w+$", code) is not None


def _describe_pv(code: str) -> str:
    name = _hypercall(code)
    return f"hypercall {name}" if name else re.sub(r"\s+", " ", code)


_LABEL = re.compile(r"^(\w+):")


def routine_hypercalls(source: str | None = None) -> dict[str, tuple[str, ...]]:
    """{label inside a PARAVIRT block: hypercalls that code from there on *may* make}.

    Follows ``call``, ``jmp`` and branches to other such labels, falling through from one label
    to the next unless a ``ret`` or ``jmp`` comes first: ``pv_queue_pte`` -> ``mmu_flush`` ->
    ``mmu_update``; ``pv_restore_flags`` -> ``pv_irq_enable`` -> ``event_check``.  Macro uses
    are not expanded, so the masking a routine does around its own work (``irq_save`` /
    ``irq_restore``) is not counted as a hypercall of that routine.
    """
    blocks = paravirt_blocks(source)
    calls: dict[str, set] = {}
    edges: dict[str, set] = {}
    for b in _outermost(blocks):
        if b.macro:
            continue
        node, ended = None, True
        for _, code in b.paravirt:
            m = _LABEL.match(code)
            if m:
                if node is not None and not ended:
                    edges[node].add(m.group(1))
                node, ended = m.group(1), False
                calls.setdefault(node, set())
                edges.setdefault(node, set())
                code = code[m.end():].strip()
                if not code:
                    continue
            if node is None:
                continue
            words = code.replace(",", " ").split()
            if _hypercall(code):
                calls[node].add(_hypercall(code))
            elif words[0] in ("call", "jmp") or words[0].startswith("b"):
                edges[node].add(words[-1])
            ended = words[0] in ("ret", "jmp")
    out = {}
    for start in calls:
        seen, todo, found = {start}, [start], set()
        while todo:
            n = todo.pop()
            found |= calls.get(n, set())
            for t in edges.get(n, ()):
                if t in calls and t not in seen:
                    seen.add(t)
                    todo.append(t)
        from ..abi import HYPERCALLS
        out[start] = tuple(sorted(found, key=HYPERCALLS.get))
    return out


@dataclass(frozen=True)
class Replacement:
    """Native code and the PARAVIRT code that stands in for it (one ``.if`` block or part)."""

    line: int                   #: line of the block's ``.if PARAVIRT`` ...
    macro: str | None
    native: str                 #: e.g. "wrcr ptbr, r1"
    paravirt: str               #: e.g. "hypercall new_baseptr"
    hypercalls: tuple[str, ...]  #: hypercall names in the PARAVIRT part
    file: str = ""              #: ... in this kernel file


def replacements(source: str | None = None) -> list[Replacement]:
    """For every block with both branches: the native privileged or sensitive instructions
    and what the PARAVIRT branch does instead.  When both branches have as many such lines
    (hypercalls and ``call pv_*`` on the PARAVIRT side) they are paired one to one, in order;
    otherwise the block is one pair.  A PARAVIRT branch without a hypercall is shown whole."""
    out = []
    via = routine_hypercalls(source)
    for b in paravirt_blocks(source):
        if not b.native or not b.paravirt:
            continue
        nat = [c for _, c in b.native if _native_significant(c)] or [c for _, c in b.native]
        pv = [c for _, c in b.paravirt if _pv_significant(c)] or [c for _, c in b.paravirt]
        if len(nat) == len(pv):
            pairs = list(zip(nat, pv, strict=True))
        else:
            pairs = [("; ".join(nat), "; ".join(pv))]
        for n, p in pairs:
            parts = [x.strip() for x in p.split(";")]
            calls = []
            for x in parts:
                target = x.split()[-1] if x.startswith("call ") else None
                for h in ([_hypercall(x)] if _hypercall(x) else via.get(target, ())):
                    if h and h not in calls:
                        calls.append(h)
            calls = tuple(calls)
            out.append(Replacement(b.start, b.macro, re.sub(r"\s+", " ", n),
                                   "; ".join(_describe_pv(x) for x in parts), calls, b.file))
    return out


def replaced_by(instruction: str, source: str | None = None) -> list[str]:
    """Hypercalls that stand in for ``instruction`` (e.g. ``"wrcr ptbr"`` or ``"iret"``) in
    *every* place the native kernel uses it, in ABI order; [] when it is replaced by something
    else (CLI, for instance, by a store to the shared info page)."""
    want = instruction.replace(",", " ").lower().split()
    if not want:
        raise ValueError("name an instruction, e.g. 'wrcr ptbr'")
    common = None
    for r in replacements(source):
        for part in r.native.split(";"):
            if part.replace(",", " ").lower().split()[:len(want)] == want:
                common = set(r.hypercalls) if common is None else common & set(r.hypercalls)
    if common is None:
        raise ValueError(f"the native kernel has no {instruction!r} inside a PARAVIRT block")
    from ..abi import HYPERCALLS
    return sorted(common, key=HYPERCALLS.get)


def replacements_html(source: str | None = None) -> str:
    """The :func:`replacements` as an HTML table."""
    rows = "".join(f"<tr><td>{html.escape(r.file)}:{r.line}</td>"
                   f"<td>{html.escape(r.macro or '')}</td>"
                   f"<td><code>{html.escape(r.native)}</code></td>"
                   f"<td><code>{html.escape(r.paravirt)}</code></td></tr>"
                   for r in replacements(source))
    return ("<table><thead><tr><th>file:line</th><th>macro</th><th>native build</th>"
            "<th>PARAVIRT build</th></tr></thead><tbody>" + rows + "</tbody></table>")


# ---- the hypercall ABI -----------------------------------------------------------------------
@lru_cache(maxsize=1)
def hypercall_table() -> list[tuple[int, str, str, str]]:
    """The hypercall ABI: ``(number, name, arguments and result, native code it replaces)``.

    Numbers, names and arguments come from :data:`kernel_sim.abi.HYPERCALL_TABLE` (which the
    monitor and the kernel's ``HC_*`` constants derive from), the last column from
    :func:`replacements`: it is read from the kernel's source.
    """
    from ..abi import HYPERCALL_TABLE
    natives: dict[str, list[str]] = {}
    for r in replacements():
        text = r.native + (f" (macro {r.macro})" if r.macro else "")
        for h in r.hypercalls:
            if text not in natives.setdefault(h, []):
                natives[h].append(text)
    return [(c.number, c.name, c.args, " | ".join(natives.get(c.name, [])) or "-")
            for c in HYPERCALL_TABLE]


def hypercall_table_html() -> str:
    """:func:`hypercall_table` as an HTML table."""
    rows = "".join(f"<tr><td>{n}</td><td><code>{name}</code></td><td>{html.escape(args)}</td>"
                   f"<td><code>{html.escape(native)}</code></td></tr>"
                   for n, name, args, native in hypercall_table())
    return ("<table><thead><tr><th>N</th><th>hypercall</th><th>arguments (r1..r3) and result"
            "</th><th>native code it replaces</th></tr></thead><tbody>" + rows +
            "</tbody></table>")


# ---- interrupt masking -------------------------------------------------------------------------
MASKING = ("CLI", "STI", "PUSHF", "POPF")


def masking_counts(native, paravirt) -> dict[str, int]:
    """Interrupt masking in two runs of the same workload (TechniqueResults).

    ``native``: how many CLI, STI, PUSHF and POPF the native kernel executed (each one a trap,
    or for POPF in ring 1 a silent failure, under trap-and-emulate); ``paravirt_masking``: how
    many of those the PARAVIRT kernel executed (0: it stores to the shared info page instead);
    ``event_check``: the hypercalls it made after unmasking because an event was pending.
    """
    return {"native": sum(int(native.opcodes.get(m, 0)) for m in MASKING),
            "paravirt_masking": sum(int(paravirt.opcodes.get(m, 0)) for m in MASKING),
            "event_check": int(paravirt.monitor_events.get("hypercall:event_check", 0))}


__all__ = ["paravirt_blocks", "porting_cost", "PortingCost", "macro_uses", "replacements",
           "replaced_by", "replacements_html", "hypercall_table", "hypercall_table_html",
           "masking_counts", "XEN_LINUX_LINES", "XEN_LINUX_PERCENT", "XEN_XP_LINES"]
