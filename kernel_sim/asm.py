"""Assembler and disassembler for the kernel_sim toy ISA.

The assembler turns source text into a :class:`Program`: a few *segments* of 32-bit words at byte
addresses, plus the symbol table, the entry point and a map from every address back to its source
line.  It is a classic **two-pass** assembler:

* **Pass 1** reads the source line by line.  It resolves conditional assembly (``.if``), expands
  macros, gives every label its address and works out how many words each line occupies.  Sizes
  must be known here, which is why ``li`` is *always* two words and why ``.org``, ``.space``,
  ``.align`` and ``.if`` need values that are known when they are seen.
* **Pass 2** goes over the recorded statements again, now that every label has an address, and
  encodes them.  Instruction operands, ``.word`` and ``.entry`` may therefore use labels that are
  defined further down (*forward references*).

Source syntax (one statement per line)::

    ; a comment runs to the end of the line
    COUNT = 10                  ; a constant (same as  .equ COUNT, 10)
    start:  movi r1, COUNT      ; a label may share a line with an instruction
    loop:   addi r1, r1, -1
            bne  r1, r0, loop   ; branch targets are addresses; the assembler computes the offset
            ld   r2, [sp + 4]   ; memory operands: [reg], [reg + expr], [reg - expr]
            li   r3, message    ; pseudo-instruction: any 32-bit value, always two words
            hlt
    message: .string "hi\\n"

Mnemonics, register names (``r0``..``r15``, ``sp`` = ``r15``), directives, control-register
names and port names are case-insensitive; lowercase is the house style.  Symbols (labels and
constants) are case-sensitive.  Numbers: ``42``, ``0x2a``, ``0b101010``, ``'*'``, ``'\\n'``.
Expressions use ``+ - * / % << >> & | ^ ~``, the comparisons ``== != < <= > >=`` and
``&& || !`` (which give 1 or 0, handy in ``.if``), parentheses and ``.`` (the address of the
current line), with C precedence; ``/`` and ``%`` truncate toward zero as in C.  (Both sides of
``&&``/``||`` are evaluated.)  Values are exact integers
while an expression is evaluated and are checked against the field they go into.

Directives: ``.org`` ``.word`` ``.string`` ``.space`` ``.align`` ``.equ`` ``.entry`` ``.if``
``.ifdef`` ``.ifndef`` ``.else`` ``.endif`` ``.macro`` ``.endm`` ``.include`` (see
:data:`DIRECTIVES`).

Several files: ``.include``
---------------------------
``.include "path"`` assembles another file at that point, as if its lines were written there
(the way ``#include`` works in C): its labels, constants and macros are visible to everything
after it.  This is how a kernel is split into files, xv6-style (``guests/kernel.s`` includes
``kernel/boot.s``, ``kernel/traps.s`` ...), and how every program gets the generated ABI
constants (``guests/abi.s``).

* The path is relative to the directory of the file that contains the ``.include``.  The top
  source is a string, so its directory is the *base_dir* argument of :func:`assemble` (default:
  the current directory).
* **Include-once**: a file is assembled only the first time it is included; later
  ``.include`` lines of the same file do nothing (like a C header with an include guard).  So
  two files may both include the ABI constants without defining them twice.
* A file that includes itself, directly or through other files, is an error that shows the
  whole chain (``kernel.s:3:1 includes a.s, a.s:1:1 includes kernel.s``); so is a missing file.
* ``.include`` may sit inside ``.if`` ... ``.endif`` (a conditional include).  An included file
  must close the ``.if`` blocks it opens.
* Errors inside an included file name *that* file and its line and column; ``Program.lines``
  maps every word to ``(file, line)``.

Decisions worth knowing
-----------------------
* ``.if EXPR``: a name that is not defined (neither by ``defines=`` nor earlier in the source)
  counts as **0**, like ``#if`` in the C preprocessor, so ``.if PARAVIRT`` works in a build that
  does not pass ``PARAVIRT``.  To catch typos and ordering mistakes, a name that was taken as 0
  by an ``.if`` and is *defined later* in the source is an error.
* Labels may not be named like registers; a label and a constant share one namespace; defining a
  name twice is an error that names the first definition.
* ``Program.lines`` maps each word to the line the learner wrote: for code produced by a macro
  that is the line of the (outermost) macro invocation.  Errors *inside* a macro body point at
  the body line and say which invocation expanded it.
* Branch and jump offsets are computed modulo 2**32, like the CPU's program-counter arithmetic.
* Macro names are case-insensitive (like mnemonics); ``\\@`` in a macro body becomes a number
  that is different for every expansion, so ``loop\\@:`` gives each expansion its own label.

The disassembler prints one word at a time.  Its output assembles back to the same word (at the
same address) for **every** 32-bit word: canonical encodings print as instructions; words with
an invalid opcode, or with bits set in fields their format ignores (for example a three-register
``add`` with non-zero ``imm[15:4]``), print as ``.word 0x........`` with a comment saying what
the CPU would do with them.  The ``<label>`` annotation printed after a branch target when
symbols are given is for humans and is not assembler syntax.
"""
from __future__ import annotations

import bisect
import difflib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import isa

__all__ = ["AsmError", "Program", "assemble", "disassemble_word", "disassemble",
           "disassemble_program", "DIRECTIVES", "PSEUDO_INSTRUCTIONS", "FORMAT_SYNTAX"]

# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------
MAX_MACRO_DEPTH = 32              #: nested macro expansions before we call it runaway recursion
MAX_IMAGE_BYTES = 64 << 20        #: total size of all segments (a typo in .space must not eat RAM)
ADDRESS_LIMIT = 1 << 32

#: Operand syntax per format, used in messages and in the ISA reference.
FORMAT_SYNTAX = {
    "none": "", "a": "rA", "ab": "rA, rB", "abc": "rA, rB, rC", "abi": "rA, rB, simm16",
    "abu": "rA, rB, uimm16", "abs": "rA, rB, shift", "ai": "rA, simm16", "au": "rA, uimm16",
    "mem": "rA, [rB + simm16]", "br": "rA, rB, target", "j": "target", "in": "rA, port",
    "out": "port, rA", "rdcr": "rA, creg", "wrcr": "creg, rA", "u": "uimm16",
}

#: Pseudo-instructions: name -> (syntax, meaning).
PSEUDO_INSTRUCTIONS = {
    "li": ("rA, value32", "load any 32-bit value: lui rA, value >> 16 ; ori rA, rA, value & 0xffff"
                          " (always two words)"),
    "la": ("rA, label", "load an address; the same as li"),
    "inc": ("rA", "addi rA, rA, 1"),
    "dec": ("rA", "addi rA, rA, -1"),
}
_PSEUDO_SYNTAX = {"li": "ai", "la": "ai", "inc": "a", "dec": "a"}

#: Directives: name -> meaning.
DIRECTIVES = {
    ".org": ".org ADDR -- continue at byte address ADDR (starts a new segment)",
    ".word": ".word EXPR[, EXPR...] -- one 32-bit word per expression",
    ".string": '.string "text" -- one word per character, then a 0 word',
    ".space": ".space NBYTES -- NBYTES/4 zero words (a multiple of 4)",
    ".align": ".align N -- zero words up to the next multiple of N bytes (a power of two >= 4)",
    ".equ": ".equ NAME, EXPR -- define a constant (also: NAME = EXPR)",
    ".entry": ".entry EXPR -- the address where execution starts",
    ".if": ".if EXPR -- assemble up to .else/.endif only if EXPR != 0 (undefined names are 0)",
    ".ifdef": ".ifdef NAME -- assemble only if NAME is defined (by defines= or above this line)",
    ".ifndef": ".ifndef NAME -- assemble only if NAME is not defined (yet)",
    ".else": ".else -- the other branch of .if/.ifdef/.ifndef",
    ".endif": ".endif -- end of a conditional block",
    ".macro": ".macro NAME [PARAM, ...] -- define a macro; \\PARAM and \\@ in the body",
    ".endm": ".endm -- end of a macro definition",
    ".include": '.include "path" -- assemble that file here, once (path relative to this file)',
}
_COND_OPEN = (".if", ".ifdef", ".ifndef")

REGISTER_NAMES = {f"r{i}": i for i in range(isa.NUM_REGS)}
REGISTER_NAMES["sp"] = isa.SP
_REG_EXPECTED = "a register (r0..r15 or sp)"


def reg_name(n: int) -> str:
    """The house-style name of register *n* (``sp`` for r15)."""
    return "sp" if n == isa.SP else f"r{n}"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class AsmError(ValueError):
    """An error in assembly source; ``str()`` is ``FILE:LINE:COL: message`` (1-based)."""

    def __init__(self, filename: str, line: int, col: int, message: str):
        self.filename = filename
        self.line = line
        self.col = col
        self.message = message
        super().__init__(f"{filename}:{line}:{col}: {message}")


def _suggest(name: str, candidates: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest candidate (difflib ratio >= 0.6), or ``""``.

    Ties are broken by the longer common prefix, so ``ad`` suggests ``add`` rather than ``and``.
    """
    def prefix(c: str) -> int:
        k = 0
        while k < min(len(c), len(name)) and c[k].lower() == name[k].lower():
            k += 1
        return k

    scored = []
    for c in dict.fromkeys(candidates):
        r = difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio()
        if r >= 0.6:
            scored.append((-r, -prefix(c), c))
    return f"; did you mean '{min(scored)[2]}'?" if scored else ""


# --------------------------------------------------------------------------------------------
# The program image
# --------------------------------------------------------------------------------------------
@dataclass
class Program:
    """An assembled program.

    ``segments``: list of ``(byte_address, words)`` with ``words`` a ``uint32`` array, in source
    order; ``symbols``: every label, constant and define; ``labels``: just the labels (what the
    disassembler uses); ``entry``: ``.entry`` if given, else the label ``start`` if defined, else
    the first segment's address; ``lines``: byte address -> ``(filename, line)``.
    """

    segments: List[Tuple[int, np.ndarray]]
    symbols: Dict[str, int]
    entry: int
    lines: Dict[int, Tuple[str, int]]
    filename: str = "<source>"
    labels: Dict[str, int] = field(default_factory=dict)
    _rows: List[tuple] = field(default_factory=list, repr=False)

    @property
    def size_bytes(self) -> int:
        """Total bytes in all segments."""
        return sum(4 * len(w) for _, w in self.segments)

    def word_at(self, address: int) -> int:
        """The word the program puts at byte *address* (KeyError if none)."""
        for start, words in self.segments:
            if start <= address < start + 4 * len(words):
                return int(words[(address - start) >> 2])
        raise KeyError(f"no word of the program at address 0x{address:x}")

    def listing(self, max_words_per_line: int = 8) -> str:
        """An assembler listing: ``address  word  source`` for every source line.

        Lines from a macro expansion are marked with ``+``.  Long data (``.space``) is cut after
        *max_words_per_line* words.
        """
        out = []
        for addr, nwords, _fn, lineno, text, _top in self._rows:
            if addr is None or nwords == 0:
                prefix = f"{addr:08x}" if addr is not None else " " * 8
                out.append(f"{prefix}  {'':8}  {lineno:4d}  {text}")
                continue
            for k in range(min(nwords, max_words_per_line)):
                a = addr + 4 * k
                w = self.word_at(a)
                src = f"{lineno:4d}  {text}" if k == 0 else ""
                out.append(f"{a:08x}  {w:08x}  {src}".rstrip())
            if nwords > max_words_per_line:
                out.append(f"{'':8}  ...       ({nwords - max_words_per_line} more words)")
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Tok:
    kind: str      # number, char, string, ident, op, dot, eol
    text: str
    col: int       # 0-based

    @property
    def end(self) -> int:
        return self.col + len(self.text)


_TOKEN_RE = re.compile(r"""
   (?P<string>"(?:[^"\\]|\\.)*")
  |(?P<char>'(?:[^'\\]|\\.)*')
  |(?P<number>[0-9][0-9A-Za-z_]*)
  |(?P<ident>\.?[A-Za-z_][A-Za-z0-9_]*)
  |(?P<op><<|>>|==|!=|<=|>=|&&|\|\||[-+*/%&|^~!<>()\[\],:=])
  |(?P<dot>\.)
""", re.X)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _code_part(text: str) -> str:
    """*text* without its comment (a ``;`` outside quotes)."""
    quote = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            return text[:i]
        i += 1
    return text


# --------------------------------------------------------------------------------------------
# Source lines and the assembler proper
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Src:
    filename: str
    lineno: int
    text: str
    macros: Tuple[Tuple[str, str, int], ...] = ()  # (macro, invoking file, line), outermost 1st
    top_line: int = 0                           # the line the learner wrote (for Program.lines)
    top_file: str = ""                          # ... and its file

    def where(self, other: "_Src") -> str:
        """``line N`` of *other*, with its file name when that is not this line's file."""
        if other.filename == self.filename:
            return f"line {other.lineno}"
        return f"{other.filename}:{other.lineno}"


class _NotYet(Exception):
    """A symbol whose value is not known yet (pass 1)."""

    def __init__(self, name: str, col: int, later: bool):
        super().__init__(name)
        self.name, self.col, self.later = name, col, later


@dataclass
class _Sym:
    kind: str                  # label, const, define
    value: Optional[int]
    src: Optional[_Src] = None
    col: int = 0
    expr: object = None        # a deferred constant: its expression ...
    dot: int = 0               # ... and the address of its line


@dataclass
class _Macro:
    name: str
    params: List[str]
    body: List[Tuple[int, str]]   # (line number, text)
    src: _Src


@dataclass
class _Stmt:
    kind: str                  # ins, word
    addr: int
    seg: int
    src: _Src
    data: tuple


class _Assembler:
    def __init__(self, filename: str, defines: Dict[str, int], origin: int,
                 base_dir: Optional[Path] = None):
        self.filename = filename
        self.base_dir = Path.cwd() if base_dir is None else Path(base_dir)
        top = (self.base_dir / filename).resolve()
        # .include bookkeeping: files being assembled (outermost first), as (real path, name
        # shown in messages, the .include that opened it); and every file assembled so far.
        self.include_stack: List[Tuple[Path, str, Optional[_Src], int]] = [
            (top, filename, None, 0)]
        self.included: Dict[Path, str] = {top: filename}
        self.symbols: Dict[str, _Sym] = {}
        for name, value in defines.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"defines: {name!r} is not a valid symbol name")
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, np.integer)):
                raise ValueError(f"defines: the value of {name!r} must be an integer, "
                                 f"not {type(value).__name__}")
            self.symbols[name] = _Sym("define", int(value))
        if origin % 4 or not 0 <= origin < ADDRESS_LIMIT:
            raise ValueError(f"origin must be a word-aligned address, got {origin!r}")
        self.addr = origin
        self.segs: List[list] = []            # [start, nwords, src_of_org or None]
        self._new_segment(origin, None)
        self.stmts: List[_Stmt] = []
        self.rows: List[list] = []            # [addr, nwords, filename, line, text]
        self.macros: Dict[str, _Macro] = {}
        self.cond: List[dict] = []
        self.cond_base = 0
        self.expansions = 0
        self.entry_expr = None
        self.if_assumed: Dict[str, Tuple[_Src, int]] = {}
        self.total_bytes = 0

    # ---- errors --------------------------------------------------------------------------
    def err(self, src: _Src, col: int, message: str) -> AsmError:
        if src.macros:
            chain = " <- ".join(f"macro '{n}' invoked at "
                                + (f"line {ln}" if fn == src.filename else f"{fn}:{ln}")
                                for n, fn, ln in reversed(src.macros))
            message = f"{message} (in {chain})"
        return AsmError(src.filename, src.lineno, col + 1, message)

    # ---- tokenizer ----------------------------------------------------------------------
    def tokenize(self, src: _Src) -> List[_Tok]:
        text = src.text
        toks: List[_Tok] = []
        pos, n = 0, len(text)
        while pos < n:
            ch = text[pos]
            if ch in " \t\r\f\v":
                pos += 1
                continue
            if ch == ";":
                break
            m = _TOKEN_RE.match(text, pos)
            if not m:
                if ch == '"':
                    raise self.err(src, pos, "unterminated string: the closing '\"' is missing")
                if ch == "'":
                    raise self.err(src, pos, "unterminated character literal: the closing "
                                             "\"'\" is missing")
                if ch == "\\":
                    raise self.err(src, pos, "'\\' is only allowed inside a .macro body "
                                             "(as \\PARAM or \\@)")
                raise self.err(src, pos, f"unexpected character {ch!r}")
            toks.append(_Tok(m.lastgroup, m.group(), pos))
            pos = m.end()
        toks.append(_Tok("eol", "", toks[-1].end if toks else 0))
        return toks

    def unescape(self, src: _Src, tok: _Tok) -> str:
        body, out, i = tok.text[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                esc = body[i + 1]
                if esc not in _ESCAPES:
                    raise self.err(src, tok.col + 1 + i, f"unknown escape '\\{esc}'; use \\n \\t "
                                                         f"\\r \\0 \\\\ \\\" or \\'")
                out.append(_ESCAPES[esc])
                i += 2
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    def number(self, src: _Src, tok: _Tok) -> int:
        t = tok.text.lower()
        try:
            if t.startswith("0x"):
                return int(t[2:], 16)
            if t.startswith("0b"):
                return int(t[2:], 2)
            if t.startswith("0o"):
                return int(t[2:], 8)
            return int(t, 10)
        except ValueError:
            raise self.err(src, tok.col, f"invalid number '{tok.text}' (write decimal, 0x.. hex "
                                         f"or 0b.. binary)") from None

    # ---- expressions --------------------------------------------------------------------
    # AST: ("num", value, col) ("sym", name, col) ("dot", None, col) ("un", op, node, col)
    #      ("bin", op, left, right, col)
    _BINARY = (("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="),
               ("<<", ">>"), ("+", "-"), ("*", "/", "%"))

    def parse_expr(self, p: "_Cursor", level: int = 0):
        if level == len(self._BINARY):
            return self.parse_unary(p)
        left = self.parse_expr(p, level + 1)
        while p.tok.kind == "op" and p.tok.text in self._BINARY[level]:
            op = p.next()
            right = self.parse_expr(p, level + 1)
            left = ("bin", op.text, left, right, op.col)
        return left

    def parse_unary(self, p: "_Cursor"):
        t = p.tok
        if t.kind == "op" and t.text in ("-", "+", "~", "!"):
            p.next()
            return ("un", t.text, self.parse_unary(p), t.col)
        if t.kind == "number":
            p.next()
            return ("num", self.number(p.src, t), t.col)
        if t.kind == "char":
            p.next()
            s = self.unescape(p.src, t)
            if len(s) != 1:
                raise self.err(p.src, t.col, f"a character literal holds exactly one character, "
                                             f"found {t.text}")
            return ("num", ord(s), t.col)
        if t.kind == "dot":
            p.next()
            return ("dot", None, t.col)
        if t.kind == "ident" and not t.text.startswith("."):
            if t.text.lower() in REGISTER_NAMES:
                raise self.err(p.src, t.col, f"expected an expression, found register '{t.text}'")
            p.next()
            return ("sym", t.text, t.col)
        if t.kind == "op" and t.text == "(":
            p.next()
            e = self.parse_expr(p)
            if not (p.tok.kind == "op" and p.tok.text == ")"):
                raise self.err(p.src, p.tok.col, f"expected ')', found {p.describe()}")
            p.next()
            return e
        if t.kind == "eol" and p.usage:
            raise p.too_few()
        raise self.err(p.src, t.col, f"expected an expression, found {p.describe()}")

    def eval(self, node, dot: int, mode: str, src: _Src) -> int:
        """Evaluate an expression AST.  *mode*: ``now`` (pass 1: every symbol must be known),
        ``if`` (undefined names are 0) or ``final`` (pass 2)."""
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "dot":
            return dot
        if kind == "sym":
            return self.symbol_value(node[1], node[2], mode, src)
        if kind == "un":
            v = self.eval(node[2], dot, mode, src)
            return {"-": -v, "~": ~v, "!": int(not v), "+": v}[node[1]]
        _, op, l, r, col = node
        a = self.eval(l, dot, mode, src)
        b = self.eval(r, dot, mode, src)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op in ("/", "%"):
            if b == 0:
                raise self.err(src, col, "division by zero in expression")
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)   # C: truncate toward 0
            return q if op == "/" else a - b * q
        if op in ("<<", ">>"):
            if not 0 <= b < 64:
                raise self.err(src, col, f"shift count must be 0..63, got {b}")
            return a << b if op == "<<" else a >> b
        if op in _COMPARE:
            return int(_COMPARE[op](a, b))
        if op == "&":
            return a & b
        if op == "|":
            return a | b
        return a ^ b

    def symbol_value(self, name: str, col: int, mode: str, src: _Src) -> int:
        sym = self.symbols.get(name)
        if sym is None:
            if mode == "if":
                self.if_assumed.setdefault(name, (src, col))
                return 0
            if mode == "now":
                raise _NotYet(name, col, later=False)
            known = [n for n in self.symbols]
            raise self.err(src, col, f"undefined symbol '{name}'{_suggest(name, known)}")
        if sym.value is None:
            if mode != "final":
                raise _NotYet(name, col, later=True)
            if sym.expr == "resolving":
                raise self.err(src, col, f"circular definition: '{name}' depends on itself")
            expr, sym.expr = sym.expr, "resolving"
            sym.value = self.eval(expr, sym.dot, "final", sym.src)
            sym.expr = None
        return sym.value

    def eval_now(self, node, src: _Src, what: str) -> int:
        """Evaluate in pass 1 for a directive whose value decides sizes or layout."""
        try:
            return self.eval(node, self.addr, "now", src)
        except _NotYet as e:
            why = ("its value depends on something defined later" if e.later
                   else "it is not defined before this line")
            raise self.err(src, e.col, f"{what} needs a value known when it is seen, but "
                                       f"'{e.name}' is not known yet ({why})") from None

    # ---- symbols -----------------------------------------------------------------------
    def define(self, name: str, sym: _Sym, src: _Src, col: int) -> None:
        if name.lower() in REGISTER_NAMES:
            raise self.err(src, col, f"'{name}' is a register name and cannot be a symbol")
        old = self.symbols.get(name)
        if old is not None:
            if old.kind == "define":
                raise self.err(src, col, f"'{name}' is already defined by the assembler's "
                                         f"defines (= {old.value}); guard it with .ifndef {name}")
            what = "label" if sym.kind == "label" else "symbol"
            raise self.err(src, col, f"duplicate {what} '{name}': already defined at "
                                     f"{src.where(old.src)}")
        self.symbols[name] = sym

    # ---- layout ------------------------------------------------------------------------
    def _new_segment(self, start: int, src: Optional[_Src]) -> None:
        if self.segs and self.segs[-1][1] == 0:
            self.segs.pop()                        # an empty segment (e.g. .org at the top)
        self.segs.append([start, 0, src])
        self.addr = start

    def advance(self, nwords: int, src: _Src, col: int) -> None:
        nbytes = 4 * nwords
        if self.addr + nbytes > ADDRESS_LIMIT:
            raise self.err(src, col, f"the program runs past the end of the 32-bit address space "
                                     f"(address 0x{self.addr:x} + {nbytes} bytes)")
        self.total_bytes += nbytes
        if self.total_bytes > MAX_IMAGE_BYTES:
            raise self.err(src, col, f"program image too large: more than {MAX_IMAGE_BYTES >> 20} "
                                     f"MiB of words")
        self.segs[-1][1] += nwords
        self.addr += nbytes

    # ---- pass 1: lines -----------------------------------------------------------------
    def run(self, text: str) -> None:
        self.run_file(text, self.filename)

    def run_file(self, text: str, filename: str) -> None:
        """Pass 1 over one file (the top source or an included one)."""
        lines = text.splitlines()
        saved_base, self.cond_base = self.cond_base, len(self.cond)
        self.process_lines([(i + 1, t) for i, t in enumerate(lines)], (), filename=filename)
        if len(self.cond) > self.cond_base:
            c = self.cond[-1]
            raise self.err(c["src"], c["col"], f"'{c['kind']}' is never closed by '.endif'")
        self.cond_base = saved_base

    def include(self, p: "_Cursor") -> None:
        """``.include "path"``: assemble the file here, unless it was assembled already."""
        src = p.src
        st, name = self.string_operand(p, ".include", "a file name")
        here = next(path for path, shown in self.included.items() if shown == src.filename)
        path = (here.parent / name).resolve()
        shown = posixpath.normpath(posixpath.join(posixpath.dirname(src.filename), name))
        chain = [e for e in self.include_stack if e[0] == path]
        if chain:
            links = [f"{o.filename}:{o.lineno}:{c + 1} includes {n}"
                     for _, n, o, c in self.include_stack[1:]]       # from the top file down
            links.append(f"{src.filename}:{src.lineno}:{st.col + 1} includes {chain[0][1]}")
            raise self.err(src, st.col, "'.include' cycle: " + ", ".join(links))
        if path in self.included:
            return                                  # include-once
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            nearby = (sorted(f.name for f in path.parent.iterdir() if f.is_file())
                      if path.parent.is_dir() else [])
            raise self.err(src, st.col, f"cannot include '{name}': no such file {shown!r}"
                                        f"{_suggest(path.name, nearby)}") from None
        self.included[path] = shown
        self.include_stack.append((path, shown, src, st.col))
        self.run_file(text, shown)
        self.include_stack.pop()

    def process_lines(self, lines: Sequence[Tuple[int, str]],
                      macros: Tuple[Tuple[str, str, int], ...], top_line: int = 0,
                      filename: str = "", top_file: str = "") -> None:
        collecting: Optional[_Macro] = None
        skip_macro = False          # inside a .macro definition in a false .if branch
        for lineno, text in lines:
            src = _Src(filename, lineno, text, macros, top_line or lineno, top_file or filename)
            first = re.match(r"\s*(\.[A-Za-z_][A-Za-z0-9_]*)", text)
            word = first.group(1).lower() if first else ""
            col = first.start(1) if first else 0
            if collecting is not None:
                if word == ".endm":
                    self.finish_macro(collecting)
                    collecting = None
                elif word == ".macro":
                    raise self.err(src, col, f"'.macro' inside the definition of macro "
                                             f"'{collecting.name}' ({src.where(collecting.src)}); "
                                             f"close it with '.endm' first")
                else:
                    collecting.body.append((lineno, text))
                continue
            if skip_macro:
                skip_macro = word != ".endm"
                continue
            if word in _COND_OPEN + (".else", ".endif"):
                self.conditional(word, src, col)
                continue
            if not all(c["taking"] for c in self.cond):
                skip_macro = word == ".macro"
                continue
            try:
                collecting = self.statement(src)
            except AsmError:
                raise
            except Exception as e:   # never let a bug show the learner a Python traceback
                raise self.err(src, 0, f"internal assembler error: {e!r}") from e
        if collecting is not None:
            raise self.err(collecting.src, 0, f"'.macro {collecting.name}' is never closed by "
                                              f"'.endm'")

    def conditional(self, word: str, src: _Src, col: int) -> None:
        active = all(c["taking"] for c in self.cond)
        if word in _COND_OPEN:
            taking = False
            if active:
                toks = self.tokenize(src)
                p = _Cursor(self, src, toks, 1)
                if word == ".if":
                    node = self.parse_expr(p)
                    try:
                        taking = self.eval(node, self.addr, "if", src) != 0
                    except _NotYet as e:
                        raise self.err(src, e.col, f"'.if' needs a value known when it is seen, "
                                                   f"but '{e.name}' depends on something defined "
                                                   f"later") from None
                else:
                    t = p.tok
                    if t.kind != "ident" or t.text.startswith("."):
                        raise self.err(src, t.col, f"expected a symbol name after '{word}', "
                                                   f"found {p.describe()}")
                    p.next()
                    taking = (t.text in self.symbols) == (word == ".ifdef")
                p.end(f"'{word}'")
            self.cond.append(dict(kind=word, taking=taking, parent=active, seen_else=False,
                                  src=src, col=col))
            return
        if len(self.cond) <= self.cond_base:
            raise self.err(src, col, f"'{word}' without a matching '.if'")
        c = self.cond[-1]
        if word == ".else":
            if c["seen_else"]:
                raise self.err(src, col, f"second '.else' for the '{c['kind']}' at "
                                         f"{src.where(c['src'])}")
            c["seen_else"] = True
            c["taking"] = c["parent"] and not c["taking"]
            if c["parent"]:
                self.tokenize_and_end(src, ".else")
        else:
            self.cond.pop()
            if c["parent"]:
                self.tokenize_and_end(src, ".endif")

    def tokenize_and_end(self, src: _Src, word: str) -> None:
        p = _Cursor(self, src, self.tokenize(src), 1)
        p.end(f"'{word}'")

    def statement(self, src: _Src) -> Optional[_Macro]:
        """Assemble one active line in pass 1.  Returns a macro being defined, if any."""
        toks = self.tokenize(src)
        row = [self.addr, 0, src.filename, src.lineno, ("+ " * len(src.macros)) + src.text,
               (src.top_file, src.top_line)]
        self.rows.append(row)
        p = _Cursor(self, src, toks, 0)
        # labels
        while p.tok.kind == "ident" and p.peek(1).kind == "op" and p.peek(1).text == ":":
            t = p.next()
            p.next()
            if t.text.startswith("."):
                raise self.err(src, t.col, f"a label cannot start with '.': '{t.text}'")
            self.define(t.text, _Sym("label", self.addr, src, t.col), src, t.col)
        row[0] = self.addr
        t = p.tok
        if t.kind == "eol":
            return None
        if t.kind != "ident":
            raise self.err(src, t.col, f"expected a label, an instruction or a directive, found "
                                       f"{p.describe()}")
        if p.peek(1).kind == "op" and p.peek(1).text == "=":
            p.next()
            p.next()
            self.equ(t, p)
            return None
        if t.text.startswith("."):
            return self.directive(p, row)
        self.instruction(p, row)
        return None

    def equ(self, name_tok: _Tok, p: "_Cursor") -> None:
        if name_tok.text.startswith("."):
            raise self.err(p.src, name_tok.col, f"a symbol name cannot start with '.': "
                                                f"'{name_tok.text}'")
        node = self.parse_expr(p)
        p.end("the constant's expression")
        sym = _Sym("const", None, p.src, name_tok.col)
        try:
            sym.value = self.eval(node, self.addr, "now", p.src)
        except _NotYet:
            sym.expr, sym.dot = node, self.addr      # a forward reference: resolve in pass 2
        self.define(name_tok.text, sym, p.src, name_tok.col)

    # ---- directives --------------------------------------------------------------------
    def directive(self, p: "_Cursor", row: list) -> Optional[_Macro]:
        t = p.next()
        name = t.text.lower()
        src = p.src
        if name not in DIRECTIVES:
            raise self.err(src, t.col, f"unknown directive '{t.text}'{_suggest(name, DIRECTIVES)}")
        if name in _COND_OPEN + (".else", ".endif"):
            raise self.err(src, t.col, f"'{name}' must be the first thing on its line (put the "
                                       f"label on a line of its own)")
        if name == ".equ":
            nt = p.tok
            if nt.kind != "ident":
                raise self.err(src, nt.col, f"expected a symbol name after '.equ', found "
                                            f"{p.describe()}")
            p.next()
            p.expect(",", "between the name and the value of '.equ'")
            self.equ(nt, p)
        elif name == ".org":
            node = self.parse_expr(p)
            p.end("'.org'")
            addr = self.eval_now(node, src, "'.org'")
            if not 0 <= addr < ADDRESS_LIMIT or addr % 4:
                raise self.err(src, node_col(node), f"'.org' needs a word-aligned address in "
                                               f"0..0xfffffffc, got {_show(addr)}")
            self._new_segment(addr, src)
            row[0] = addr
        elif name == ".word":
            exprs = [self.parse_expr(p)]
            while p.accept(","):
                exprs.append(self.parse_expr(p))
            p.end("'.word'")
            self.stmts.append(_Stmt("word", self.addr, len(self.segs) - 1, src, tuple(exprs)))
            self.advance(len(exprs), src, t.col)
            row[1] = len(exprs)
        elif name == ".string":
            values = tuple(ord(c) for c in self.string_operand(p, ".string", "a string")[1]) + (0,)
            self.stmts.append(_Stmt("data", self.addr, len(self.segs) - 1, src, values))
            self.advance(len(values), src, t.col)
            row[1] = len(values)
        elif name in (".space", ".align"):
            node = self.parse_expr(p)
            p.end(f"'{name}'")
            n = self.eval_now(node, src, f"'{name}'")
            if name == ".space":
                if n < 0 or n % 4:
                    raise self.err(src, node_col(node), f"'.space' needs a byte count that is a "
                                                        f"multiple of 4 and >= 0, got {n}")
                nwords = n // 4
            else:
                if n < 4 or n & (n - 1):
                    raise self.err(src, node_col(node), f"'.align' needs a power of two >= 4, "
                                                        f"got {n}")
                nwords = (-self.addr % n) // 4
            self.advance(nwords, src, t.col)
            row[1] = nwords
        elif name == ".entry":
            node = self.parse_expr(p)
            p.end("'.entry'")
            if self.entry_expr is not None:
                raise self.err(src, t.col, f"'.entry' given twice (first at "
                                           f"{src.where(self.entry_expr[1])})")
            self.entry_expr = (node, src, self.addr)
        elif name == ".macro":
            return self.start_macro(p)
        elif name == ".endm":
            raise self.err(src, t.col, "'.endm' without a matching '.macro'")
        elif name == ".include":
            self.include(p)
        return None

    def string_operand(self, p: "_Cursor", directive: str, what: str) -> Tuple[_Tok, str]:
        """The one operand of *directive*: a string in double quotes (its token and text)."""
        st = p.tok
        if st.kind != "string":
            raise self.err(p.src, st.col, f"expected {what} in double quotes after "
                                          f"'{directive}', found {p.describe()}")
        p.next()
        p.end(f"'{directive}'")
        return st, self.unescape(p.src, st)

    # ---- macros ------------------------------------------------------------------------
    def start_macro(self, p: "_Cursor") -> _Macro:
        src = p.src
        nt = p.tok
        if nt.kind != "ident" or nt.text.startswith("."):
            raise self.err(src, nt.col, f"expected a macro name after '.macro', found "
                                        f"{p.describe()}")
        p.next()
        name = nt.text.lower()
        if name.upper() in isa.BY_MNEMONIC or name in PSEUDO_INSTRUCTIONS:
            raise self.err(src, nt.col, f"'{nt.text}' is an instruction; a macro needs "
                                        f"another name")
        if name in self.macros:
            raise self.err(src, nt.col, f"macro '{nt.text}' is already defined at "
                                        f"{src.where(self.macros[name].src)}")
        params: List[str] = []
        while p.tok.kind != "eol":
            if params:
                p.expect(",", "between macro parameters")
            pt = p.tok
            if pt.kind != "ident" or pt.text.startswith("."):
                raise self.err(src, pt.col, f"expected a parameter name, found {p.describe()}")
            if pt.text in params:
                raise self.err(src, pt.col, f"parameter '{pt.text}' appears twice")
            params.append(pt.text)
            p.next()
        return _Macro(name, params, [], src)

    def finish_macro(self, m: _Macro) -> None:
        # Check every \name now, so a typo shows up even if the macro is never used.
        for lineno, text in m.body:
            code = _code_part(text)
            for mm in re.finditer(r"\\(@|[A-Za-z_][A-Za-z0-9_]*)?", code):
                arg = mm.group(1)
                if arg != "@" and arg not in m.params:
                    src = _Src(m.src.filename, lineno, text, m.src.macros)
                    shown = "\\" + (arg or "")
                    have = ", ".join(m.params) or "none"
                    raise self.err(src, mm.start(), f"unknown macro parameter '{shown}' in macro "
                                                    f"'{m.name}' (its parameters: {have})"
                                                    f"{_suggest(arg or '', m.params)}")
        self.macros[m.name] = m

    def expand(self, m: _Macro, p: "_Cursor", name_tok: _Tok) -> None:
        src = p.src
        args: List[str] = []
        if p.tok.kind != "eol":
            depth, start = 0, p.tok.col
            toks = p.toks[p.i:]
            for tk in toks:
                if tk.kind == "op" and tk.text in "([":
                    depth += 1
                elif tk.kind == "op" and tk.text in ")]":
                    depth -= 1
                if tk.kind == "eol" or (depth == 0 and tk.kind == "op" and tk.text == ","):
                    args.append(src.text[start:tk.col].strip())
                    start = tk.end
        if len(args) != len(m.params):
            raise self.err(src, name_tok.col, f"macro '{m.name}' takes {len(m.params)} "
                                              f"argument(s) ({', '.join(m.params) or 'none'}), "
                                              f"got {len(args)}")
        if len(src.macros) >= MAX_MACRO_DEPTH:
            chain = " -> ".join(n for n, _, _ in src.macros[-4:])
            raise self.err(src, name_tok.col, f"macro expansion nested more than "
                                              f"{MAX_MACRO_DEPTH} deep ({chain} -> {m.name}); "
                                              f"does macro '{m.name}' invoke itself?")
        self.expansions += 1
        values = dict(zip(m.params, args))
        values["@"] = str(self.expansions)

        def subst(text: str) -> str:
            code = _code_part(text)
            return re.sub(r"\\(@|[A-Za-z_][A-Za-z0-9_]*)", lambda mm: values[mm.group(1)],
                          code) + text[len(code):]

        body = [(ln, subst(t)) for ln, t in m.body]
        saved_base, self.cond_base = self.cond_base, len(self.cond)
        self.process_lines(body, src.macros + ((m.name, src.filename, src.lineno),),
                           src.top_line, filename=m.src.filename, top_file=src.top_file)
        if len(self.cond) > self.cond_base:
            c = self.cond[-1]
            raise self.err(c["src"], c["col"], f"'{c['kind']}' inside macro '{m.name}' is never "
                                               f"closed by '.endif' in the macro body")
        self.cond_base = saved_base

    # ---- instructions ------------------------------------------------------------------
    def instruction(self, p: "_Cursor", row: list) -> None:
        t = p.next()
        name = t.text.lower()
        src = p.src
        ins = isa.BY_MNEMONIC.get(name.upper())
        if ins is None and name not in PSEUDO_INSTRUCTIONS:
            m = self.macros.get(name)
            if m is not None:
                self.expand(m, p, t)
                return
            candidates = ([i.mnemonic.lower() for i in isa.INSTRUCTIONS]
                          + list(PSEUDO_INSTRUCTIONS) + list(self.macros))
            hint = _suggest(name, candidates)
            if p.tok.kind == "eol":
                hint += f" (if '{t.text}' is meant as a label, end it with ':')"
            raise self.err(src, t.col, f"unknown instruction '{t.text}'{hint}")
        fmt = ins.fmt if ins else _PSEUDO_SYNTAX[name]
        syntax = FORMAT_SYNTAX[fmt] if ins else PSEUDO_INSTRUCTIONS[name][0]
        p.usage = f"'{name}' takes {syntax}" if syntax else f"'{name}' takes no operands"
        if not _FORMAT_PARTS[fmt] and p.tok.kind != "eol":
            raise self.err(src, p.tok.col, f"too many operands: {p.usage}")
        ops = self.operands(fmt, p)
        p.end(None)
        nwords = 2 if name in ("li", "la") else 1
        self.stmts.append(_Stmt("ins", self.addr, len(self.segs) - 1, src, (name, ins, ops)))
        self.advance(nwords, src, t.col)
        row[1] = nwords

    def operands(self, fmt: str, p: "_Cursor") -> list:
        """Parse the operands of one format.  Registers become ints, the rest stay ASTs."""
        ops: list = []
        for k, part in enumerate(_FORMAT_PARTS[fmt]):
            if k:
                p.expect(",", "between operands")
            if part == "reg":
                ops.append(p.register())
            elif part == "expr":
                ops.append(self.parse_expr(p))
            elif part == "mem":
                ops.extend(self.memory_operand(p))
            else:                                   # port / creg: a name or an expression
                names = isa.PORT_NAMES if part == "port" else isa.CR_NAMES
                t = p.tok
                if t.kind == "ident" and t.text.lower() in REGISTER_NAMES:
                    what = "an I/O port" if part == "port" else "a control register"
                    raise self.err(p.src, t.col, f"expected {what} ({', '.join(names)}) or its "
                                                 f"number, found register '{t.text}'")
                nxt = p.peek(1)
                if (t.kind == "ident" and t.text.lower() in names
                        and (nxt.kind == "eol" or (nxt.kind == "op" and nxt.text == ","))):
                    p.next()
                    ops.append(("num", names[t.text.lower()], t.col))
                else:
                    ops.append(self.parse_expr(p))
        return ops

    def memory_operand(self, p: "_Cursor"):
        if not p.accept("["):
            raise self.err(p.src, p.tok.col, f"expected a memory operand like [r2 + 8], found "
                                             f"{p.describe()}")
        base = p.register()
        if p.tok.kind == "op" and p.tok.text == "]":
            offset = ("num", 0, p.tok.col)
        elif p.tok.kind == "op" and p.tok.text in "+-":
            offset = self.parse_expr(p)             # the sign is parsed as a unary operator
        else:
            raise self.err(p.src, p.tok.col, f"expected '+', '-' or ']' after the base register, "
                                             f"found {p.describe()}")
        if not p.accept("]"):
            raise self.err(p.src, p.tok.col, f"expected ']' to close the memory operand, found "
                                             f"{p.describe()}")
        return base, offset

    # ---- pass 2 ------------------------------------------------------------------------
    def encode(self, st: _Stmt) -> List[int]:
        src, pc = st.src, st.addr
        if st.kind == "data":
            return list(st.data)
        if st.kind == "word":
            out = []
            for node in st.data:
                v = self.eval(node, pc, "final", src)
                if not -(1 << 31) <= v < (1 << 32):
                    raise self.err(src, node_col(node), f"value {_show(v)} does not fit in a "
                                                        f"32-bit word")
                out.append(v & isa.WORD_MASK)
            return out
        name, ins, ops = st.data

        def val(node) -> int:
            return self.eval(node, pc, "final", src)

        if ins is None:                             # pseudo-instructions
            a = ops[0]
            if name in ("inc", "dec"):
                return [isa.encode(isa.OP_ADDI, a, a, 1 if name == "inc" else -1)]
            v = val(ops[1])
            if not -(1 << 31) <= v < (1 << 32):
                raise self.err(src, node_col(ops[1]), f"'{name}' value {_show(v)} does not fit "
                                                      f"in 32 bits")
            v &= isa.WORD_MASK
            return [isa.encode(isa.OP_LUI, a, 0, v >> 16), isa.encode(isa.OP_ORI, a, a, v & 0xFFFF)]
        op, fmt = ins.opcode, ins.fmt
        if fmt == "none":
            return [isa.encode(op)]
        if fmt == "a":
            return [isa.encode(op, ops[0])]
        if fmt == "ab":
            return [isa.encode(op, ops[0], ops[1])]
        if fmt == "abc":
            return [isa.encode(op, ops[0], ops[1], ops[2])]
        if fmt in ("abi", "abu", "abs", "mem"):
            kind = {"abi": "signed", "mem": "signed", "abu": "unsigned", "abs": "shift"}[fmt]
            return [isa.encode(op, ops[0], ops[1], self.imm(ops[2], val(ops[2]), kind, name, src))]
        if fmt in ("ai", "au"):
            kind = "signed" if fmt == "ai" else "unsigned"
            return [isa.encode(op, ops[0], 0, self.imm(ops[1], val(ops[1]), kind, name, src))]
        if fmt == "u":
            return [isa.encode(op, 0, 0, self.imm(ops[0], val(ops[0]), "unsigned", name, src))]
        if fmt == "br":
            return [isa.encode(op, ops[0], ops[1], self.offset(ops[2], pc, 16, src))]
        if fmt == "j":
            return [isa.encode_j(op, self.offset(ops[0], pc, 24, src))]
        if fmt in ("in", "rdcr"):
            return [isa.encode(op, ops[0], 0, self.imm(ops[1], val(ops[1]), fmt, name, src))]
        # out, wrcr: (port/creg, register)
        return [isa.encode(op, ops[1], 0, self.imm(ops[0], val(ops[0]), fmt, name, src))]

    def imm(self, node, v: int, kind: str, name: str, src: _Src) -> int:
        col = node_col(node)
        if kind == "signed":
            if -0x8000 <= v <= 0x7FFF:
                return v & 0xFFFF
            hint = (f"; '{name}' sign-extends its immediate, so 0x{v:x} cannot be written here: "
                    f"use li to load it into a register (or write {v - 0x10000} if you mean that "
                    f"bit pattern)" if 0x8000 <= v <= 0xFFFF
                    else "; use li to load a 32-bit constant into a register")
            raise self.err(src, col, f"immediate {_show(v)} does not fit in a signed 16-bit field "
                                     f"(-32768..32767){hint}")
        if kind == "unsigned":
            if 0 <= v <= 0xFFFF:
                return v
            raise self.err(src, col, f"immediate {_show(v)} does not fit in an unsigned 16-bit "
                                     f"field (0..65535); use li to load a 32-bit constant into a "
                                     f"register")
        if kind == "shift":
            if 0 <= v <= 31:
                return v
            raise self.err(src, col, f"shift amount must be 0..31, got {v}")
        what = "port number" if kind in ("in", "out") else "control register number"
        names = isa.PORT_NAMES if kind in ("in", "out") else isa.CR_NAMES
        if 0 <= v <= 0xFFFF:
            return v
        raise self.err(src, col, f"{what} must be 0..65535 (or one of {', '.join(names)}), "
                                 f"got {_show(v)}")

    def offset(self, node, pc: int, bits: int, src: _Src) -> int:
        target = self.eval(node, pc, "final", src)
        delta = (target - (pc + 4)) & isa.WORD_MASK   # pc arithmetic is modulo 2**32
        if delta >= 1 << 31:
            delta -= 1 << 32
        col = node_col(node)
        if delta % 4:
            raise self.err(src, col, f"branch target {_show(target)} is not word aligned "
                                     f"(targets must be multiples of 4)")
        words = delta // 4
        limit = 1 << (bits - 1)
        if not -limit <= words < limit:
            raise self.err(src, col, f"branch target out of range: {words} words, the limit is "
                                     f"+-{limit}" + ("; use li + jr for a far jump" if bits == 16
                                                     else ""))
        return words & ((1 << bits) - 1)

    def finish(self) -> Program:
        # names assumed 0 by .if but defined later: almost always a mistake
        for name, (src, col) in self.if_assumed.items():
            sym = self.symbols.get(name)
            if sym is not None and sym.src is not None:
                raise self.err(src, col, f"'{name}' is used in '.if' before it is defined (at line "
                                         f"{sym.src.lineno}); .if needs values known when it is "
                                         f"seen")
        segs = [s for s in self.segs if s[1] > 0]
        order = sorted(range(len(segs)), key=lambda k: segs[k][0])
        for x, y in zip(order, order[1:]):
            a, b = segs[x], segs[y]
            if b[0] < a[0] + 4 * a[1]:
                later, earlier = (a, b) if x > y else (b, a)
                where = later[2] or earlier[2]
                raise self.err(where, 0,
                               f"segments overlap: 0x{b[0]:x}..0x{b[0] + 4 * b[1]:x} and "
                               f"0x{a[0]:x}..0x{a[0] + 4 * a[1]:x} both write address 0x{b[0]:x}")
        arrays = {id(s): np.zeros(s[1], dtype=np.uint32) for s in segs}
        all_segs = self.segs
        lines: Dict[int, Tuple[str, int]] = {}
        for st in self.stmts:
            try:
                words = self.encode(st)
            except AsmError:
                raise
            except Exception as e:   # a bug of ours: still report the line, not a traceback
                raise self.err(st.src, 0, f"internal assembler error: {e!r}") from e
            arr = arrays[id(all_segs[st.seg])]
            base = (st.addr - all_segs[st.seg][0]) >> 2
            arr[base:base + len(words)] = words
            for k in range(len(words)):
                lines[st.addr + 4 * k] = (st.src.top_file, st.src.top_line)
        for addr, nwords, _, _, _, top in self.rows:   # .space / .align belong to a line too
            for k in range(nwords):
                lines.setdefault(addr + 4 * k, top)
        symbols = {}
        for name, sym in self.symbols.items():
            symbols[name] = (sym.value if sym.value is not None
                             else self.symbol_value(name, sym.col, "final", sym.src))
        if self.entry_expr is not None:
            node, src, dot = self.entry_expr
            entry = self.eval(node, dot, "final", src)
            if not 0 <= entry < ADDRESS_LIMIT or entry % 4:
                raise self.err(src, node_col(node), f"'.entry' needs a word-aligned address, "
                                                    f"got {_show(entry)}")
        elif "start" in self.symbols:
            entry = symbols["start"]
        else:
            entry = segs[0][0] if segs else self.segs[0][0]
        labels = {n: s.value for n, s in self.symbols.items() if s.kind == "label"}
        rows = [tuple(r) for r in self.rows]
        return Program([(s[0], arrays[id(s)]) for s in segs], symbols, entry, lines,
                       self.filename, labels, rows)


_FORMAT_PARTS = {
    "none": (), "a": ("reg",), "ab": ("reg", "reg"), "abc": ("reg", "reg", "reg"),
    "abi": ("reg", "reg", "expr"), "abu": ("reg", "reg", "expr"), "abs": ("reg", "reg", "expr"),
    "ai": ("reg", "expr"), "au": ("reg", "expr"), "mem": ("reg", "mem"),
    "br": ("reg", "reg", "expr"), "j": ("expr",), "in": ("reg", "port"), "out": ("port", "reg"),
    "rdcr": ("reg", "creg"), "wrcr": ("creg", "reg"), "u": ("expr",),
}
assert set(_FORMAT_PARTS) == set(isa.FORMATS) == set(FORMAT_SYNTAX)


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            "&&": lambda a, b: bool(a) and bool(b), "||": lambda a, b: bool(a) or bool(b)}


def node_col(node) -> int:
    """The column of the leftmost token of an expression."""
    while node[0] == "bin":
        node = node[2]
    return node[-1]


def _show(v: int) -> str:
    return str(v) if -4096 < v < 4096 else (f"0x{v:x}" if v >= 0 else f"-0x{-v:x}")


class _Cursor:
    """A position in one line's tokens, with the helpers operand parsing needs."""

    def __init__(self, asm: _Assembler, src: _Src, toks: List[_Tok], i: int):
        self.asm, self.src, self.toks, self.i = asm, src, toks, i
        self.usage: Optional[str] = None

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "eol":
            self.i += 1
        return t

    def describe(self) -> str:
        t = self.tok
        return "end of line" if t.kind == "eol" else f"'{t.text}'"

    def accept(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.i += 1
            return True
        return False

    def too_few(self) -> AsmError:
        return self.asm.err(self.src, self.tok.col, f"too few operands: {self.usage}")

    def expect(self, text: str, where: str) -> None:
        if self.accept(text):
            return
        if self.tok.kind == "eol" and self.usage:
            raise self.too_few()
        raise self.asm.err(self.src, self.tok.col, f"expected '{text}' {where}, found "
                                                   f"{self.describe()}")

    def register(self) -> int:
        t = self.tok
        if t.kind == "eol" and self.usage:
            raise self.too_few()
        if t.kind == "ident" and t.text.lower() in REGISTER_NAMES:
            self.i += 1
            return REGISTER_NAMES[t.text.lower()]
        raise self.asm.err(self.src, t.col, f"expected {_REG_EXPECTED}, found {self.describe()}")

    def end(self, what: Optional[str]) -> None:
        t = self.tok
        if t.kind == "eol":
            return
        if self.usage and t.kind == "op" and t.text == ",":
            raise self.asm.err(self.src, self.peek(1).col if self.peek(1).kind != "eol" else t.col,
                               f"too many operands: {self.usage}")
        after = what or "the operands"
        raise self.asm.err(self.src, t.col, f"unexpected {self.describe()} after {after}")


def assemble(source: str, filename: str = "<source>", defines: Optional[Dict[str, int]] = None,
             origin: int = 0, base_dir: Union[str, Path, None] = None) -> Program:
    """Assemble *source* into a :class:`Program`.

    *defines* gives symbols for conditional assembly (``{"PARAVIRT": 1}``); they are usable in
    every expression.  Code starts at byte address *origin* unless ``.org`` says otherwise.
    *base_dir* is the directory the source's ``.include`` paths are relative to (default: the
    current directory); *filename* is the name errors show for the source itself, and
    ``base_dir / filename``, if it is a file, counts as included already (so an ``.include``
    of it is a cycle).  Raises :class:`AsmError` (``FILE:LINE:COL: message``) for any problem
    in the source or in a file it includes.
    """
    if not isinstance(source, str):
        raise TypeError(f"assemble() needs the source as a str, not {type(source).__name__}")
    asm = _Assembler(filename, dict(defines or {}), origin, base_dir)
    asm.run(source)
    return asm.finish()


# --------------------------------------------------------------------------------------------
# Disassembler
# --------------------------------------------------------------------------------------------
_PORT_BY_NUMBER = {v: k for k, v in isa.PORT_NAMES.items()}
_CR_BY_NUMBER = {v: k for k, v in isa.CR_NAMES.items()}


def parse_defines(items: Iterable[str]) -> Dict[str, int]:
    """``["PARAVIRT", "LOOPS=0x10"]`` -> ``{"PARAVIRT": 1, "LOOPS": 16}`` (the CLI's ``-D``).

    A bare name means 1, as a C compiler's ``-DNAME`` does; a value is read as a Python integer
    literal (decimal, ``0x``, ``0b``).  A malformed value raises ValueError.
    """
    out: Dict[str, int] = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = int(value, 0) if value else 1
    return out


def _unused_bits_set(fmt: str, a: int, b: int, imm: int) -> bool:
    """True if the word has bits set in fields its format ignores (a non-canonical encoding)."""
    if fmt == "none":
        return bool(a or b or imm)
    if fmt == "a":
        return bool(b or imm)
    if fmt == "ab":
        return bool(imm)
    if fmt == "abc":
        return bool(imm & 0xFFF0)
    if fmt == "abs":
        return imm > 31
    if fmt in ("ai", "au", "in", "out", "rdcr", "wrcr"):
        return bool(b)
    if fmt == "u":
        return bool(a or b)
    return False


class _SymbolLookup:
    def __init__(self, symbols: Optional[Dict[str, int]]):
        by_addr: Dict[int, str] = {}
        for name, addr in sorted((symbols or {}).items(), key=lambda kv: kv[0]):
            by_addr.setdefault(int(addr) & isa.WORD_MASK, name)
        self.by_addr = by_addr
        self.addrs = sorted(by_addr)

    def annotate(self, addr: int) -> str:
        if not self.addrs:
            return ""
        k = bisect.bisect_right(self.addrs, addr) - 1
        if k < 0:
            return ""
        base = self.addrs[k]
        name = self.by_addr[base]
        return f" <{name}>" if base == addr else f" <{name}+0x{addr - base:x}>"


def _target(offset_words: int, pc: Optional[int], look: Optional[_SymbolLookup]) -> str:
    rel = 4 + 4 * offset_words          # relative to the branch itself
    if pc is None:
        return f". + {rel}" if rel >= 0 else f". - {-rel}"
    target = (pc + rel) & isa.WORD_MASK
    return f"0x{target:x}" + (look.annotate(target) if look else "")


def _render(ins: isa.Instruction, a: int, b: int, imm: int, word: int, pc: Optional[int],
            look: Optional[_SymbolLookup]) -> str:
    mn, fmt = ins.mnemonic.lower(), ins.fmt
    ra, rb = reg_name(a), reg_name(b)
    if fmt == "none":
        return mn
    if fmt == "a":
        return f"{mn} {ra}"
    if fmt == "ab":
        return f"{mn} {ra}, {rb}"
    if fmt == "abc":
        return f"{mn} {ra}, {rb}, {reg_name(imm & 0xF)}"
    if fmt == "abi":
        return f"{mn} {ra}, {rb}, {isa.sign16(imm)}"
    if fmt == "abu":
        return f"{mn} {ra}, {rb}, 0x{imm:x}"
    if fmt == "abs":
        return f"{mn} {ra}, {rb}, {imm & 31}"
    if fmt == "ai":
        return f"{mn} {ra}, {isa.sign16(imm)}"
    if fmt == "au":
        return f"{mn} {ra}, 0x{imm:x}"
    if fmt == "u":
        return f"{mn} {imm}"
    if fmt == "mem":
        off = isa.sign16(imm)
        inner = rb if off == 0 else (f"{rb} + {off}" if off > 0 else f"{rb} - {-off}")
        return f"{mn} {ra}, [{inner}]"
    if fmt == "br":
        return f"{mn} {ra}, {rb}, {_target(isa.sign16(imm), pc, look)}"
    if fmt == "j":
        return f"{mn} {_target(isa.sign24(word), pc, look)}"
    if fmt in ("in", "out"):
        port = _PORT_BY_NUMBER.get(imm, f"0x{imm:x}")
        return f"{mn} {ra}, {port}" if fmt == "in" else f"{mn} {port}, {ra}"
    cr = _CR_BY_NUMBER.get(imm, str(imm))
    return f"{mn} {ra}, {cr}" if fmt == "rdcr" else f"{mn} {cr}, {ra}"


def disassemble_word(word: int, pc: Optional[int] = None,
                     symbols: Optional[Dict[str, int]] = None) -> str:
    """One instruction word as assembly text.

    With *pc* (the word's byte address) branch and jump targets print as absolute addresses,
    with *symbols* also as ``<label>`` or ``<label+0x8>``; without *pc* they print relative to
    the instruction, as ``. + 12``.  Invalid opcodes and non-canonical encodings print as
    ``.word 0x........`` with a comment, so every output assembles back to the same word.
    """
    return _disassemble(int(word) & isa.WORD_MASK, pc, _SymbolLookup(symbols) if symbols else None)


def _disassemble(word: int, pc: Optional[int], look: Optional[_SymbolLookup]) -> str:
    opcode, a, b, imm = isa.decode(word)
    ins = isa.BY_OPCODE.get(opcode)
    if ins is None:
        return f".word 0x{word:08x}  ; invalid opcode 0x{opcode:02x}"
    text = _render(ins, a, b, imm, word, pc, look)
    if _unused_bits_set(ins.fmt, a, b, imm):
        return f".word 0x{word:08x}  ; non-canonical {text} (bits set in unused fields)"
    return text


def disassemble(words: Iterable[int], base: int = 0,
                symbols: Optional[Dict[str, int]] = None) -> List[str]:
    """Disassemble consecutive words starting at byte address *base*.

    Each line reads ``address:  word  instruction``; a ``label:`` line precedes every address
    that has a symbol.
    """
    look = _SymbolLookup(symbols) if symbols else None
    out = []
    for k, w in enumerate(words):
        addr = base + 4 * k
        if look and addr in look.by_addr:
            out.append(f"{look.by_addr[addr]}:")
        w = int(w) & isa.WORD_MASK
        out.append(f"{addr:08x}:  {w:08x}  {_disassemble(w, addr, look)}")
    return out


def disassemble_program(program: Program) -> List[str]:
    """Disassemble every segment of *program*, annotated with its labels."""
    out: List[str] = []
    for start, words in program.segments:
        if out:
            out.append("")
        out.extend(disassemble(words, start, program.labels or None))
    return out
