"""The binary translator's translation cache: guest kernel code rewritten into real host code.

VMware's original monitor (Bugnion et al., ACM TOCS 2012) ran guest *user* code directly and
guest *kernel* code through a dynamic binary translator: each basic block of kernel code was
rewritten, once, into a translation cache, where innocuous instructions were copied unchanged and
the instructions that must not run directly became calls into the monitor ("callouts").  This
module is that translator for the toy ISA.  Its output is ordinary toy-ISA code in simulated
host memory; the jitted CPU runs it in ring 1, and :meth:`TranslationCache.show` puts a guest
block beside its translation.

Translation rules (one guest instruction -> one translated word, so the guest's tick count --
its notion of time -- is exactly what native execution would give):

===========================================  =====================================================
guest instruction                            translation
===========================================  =====================================================
innocuous, not a control transfer            copied unchanged (ALU, LD, ST, PUSH, POP, ...)
``syscall``                                  copied: it traps, and the monitor reflects it
conditional branch / ``jmp`` to ``t``        the same branch to ``t``'s translation when one
                                             exists (*chained*), else to an exit stub ``callout``
                                             that translates ``t`` and patches the branch
``call``, ``callr``, ``ret``, ``jr``         ``callout`` (the return address pushed must be the
                                             *guest's*, and indirect targets need a lookup)
privileged or sensitive (``cli``, ``popf``,  ``callout``: the monitor emulates it against the
``wrcr``, ``iret``, ``getcpl``, ...)         virtual CPU -- so binary translation is correct even
                                             where trap-and-emulate is not (Popek & Goldberg)
invalid opcode (including ``vmcall``)        ``callout`` that raises the guest's #UD
a store that keeps faulting on a write-      (after retranslation) ``callout`` that performs the
protected page table                         store and updates the shadow entry: no fault
===========================================  =====================================================

A block ends after an unconditional transfer, after a callout that may change the control flow,
at the end of the guest page (so each block belongs to one guest page, and a write to that page
invalidates exactly its blocks), or after ``MAX_BLOCK`` instructions; a block that ends without
a transfer finishes with an *exit* callout that continues at the next guest pc.  Exit callouts
and stubs do not count as guest instructions.

The cache is a region of host-physical memory owned by the monitor, mapped for instruction
fetch at ``TC_VA`` (the top of every shadow address space, which the guest never uses) and
protected from the guest's data accesses by the CPU's data limit (the segment truncation VMware's
monitor relied on).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .. import isa

TC_VA = 0xFF000000          # where translated code is fetched from (guest never uses it)
MAX_BLOCK = 32              # guest instructions per block at most
PAGE = isa.PAGE_SIZE

# callout kinds (the monitor's callout table maps a callout's imm16 to one of these + operands)
CO_EMULATE = "emulate"      # a privileged/sensitive instruction at guest_pc
CO_CALL = "call"            # call (direct: target known; callr: register)
CO_RET = "ret"
CO_JR = "jr"
CO_EXIT = "exit"            # continue at guest pc (block end or unchained branch stub)
CO_UD = "invalid_opcode"    # the guest's #UD at guest_pc
CO_STORE = "store"          # adaptively retranslated store (performed by the monitor)

_BRANCHES = {isa.OP_BEQ, isa.OP_BNE, isa.OP_BLT, isa.OP_BGE, isa.OP_BLTU, isa.OP_BGEU}
_CALLOUT_OPS = {isa.OP_CALL: CO_CALL, isa.OP_CALLR: CO_CALL, isa.OP_RET: CO_RET,
                isa.OP_JR: CO_JR}
#: emulated instructions after which the guest's control flow may go anywhere
_ENDS_BLOCK = {isa.OP_IRET, isa.OP_SYSRET, isa.OP_HLT, isa.OP_WRCR}


class TranslationCacheFull(Exception):
    """No room left: the monitor flushes the whole cache and translates again."""


@dataclass
class Callout:
    """One entry of the callout table: what the monitor does when ``callout n`` runs."""

    kind: str
    guest_pc: int               # the guest instruction this callout stands for
    target: int = -1            # CO_EXIT / CO_CALL (direct): guest target pc
    word: int = 0               # the guest instruction word (for emulation and decoding)
    branch_at: int = -1         # CO_EXIT used as a stub: the TC address of the branch to patch


@dataclass
class Block:
    """One translated guest block."""

    guest_pc: int
    guest_page: int             # guest-physical page the code was read from
    key: Tuple[int, int]
    tc_start: int               # TC virtual address of the first translated word
    tc_end: int                 # one past the last word (stubs included)
    guest_pcs: List[int] = field(default_factory=list)   # guest pc of each translated word
    incoming: List[int] = field(default_factory=list)    # TC addresses of chained branches here
    valid: bool = True


class TranslationCache:
    """A translation cache in host memory.

    ``mem`` is host physical memory (uint32 words); the cache occupies ``[base, base+size)``
    bytes of it and is fetched at virtual ``TC_VA``.
    """

    def __init__(self, mem, base: int, size: int):
        if base % PAGE or size % PAGE or size <= 0:
            raise ValueError("the translation cache must be whole pages")
        if size > 4 * 32768:
            raise ValueError("the translation cache is limited to 128 KiB so that every "
                             "branch inside it stays within reach of a 16-bit offset")
        self.mem = mem
        self.base = base
        self.size = size
        self.flush()

    # ---- bookkeeping ------------------------------------------------------------------------
    def flush(self) -> None:
        """Drop every translation (the cache is full, or the monitor wants a clean start)."""
        self.mem[self.base // 4:(self.base + self.size) // 4] = 0
        self.next = TC_VA
        self.blocks: Dict[Tuple[int, int], Block] = {}
        self.by_page: Dict[int, List[Block]] = {}
        self.callouts: List[Callout] = []
        self.word_owner: Dict[int, Block] = {}       # TC address -> block (for pc mapping)
        self.stats = {"translations": 0, "translated_insns": 0, "chains": 0,
                      "invalidations": 0, "flushes": 0}

    def contains(self, tc_va: int) -> bool:
        return TC_VA <= tc_va < TC_VA + self.size

    def _emit(self, word: int) -> int:
        if self.next + 4 > TC_VA + self.size:
            raise TranslationCacheFull()
        addr = self.next
        self.mem[(self.base + addr - TC_VA) // 4] = word & isa.WORD_MASK
        self.next += 4
        return addr

    def _patch(self, addr: int, word: int) -> None:
        self.mem[(self.base + addr - TC_VA) // 4] = word & isa.WORD_MASK

    def word_at(self, addr: int) -> int:
        return int(self.mem[(self.base + addr - TC_VA) // 4])

    def _callout(self, co: Callout) -> int:
        if len(self.callouts) > 0xFFFF:
            raise TranslationCacheFull()
        self.callouts.append(co)
        return isa.encode(isa.OP_CALLOUT, 0, 0, len(self.callouts) - 1)

    def callout(self, number: int) -> Callout:
        return self.callouts[number]

    # ---- lookup -----------------------------------------------------------------------------
    def lookup(self, key: Tuple[int, int]) -> Optional[Block]:
        block = self.blocks.get(key)
        return block if block is not None and block.valid else None

    def guest_pc(self, tc_va: int) -> int:
        """The guest pc a TC address stands for (faults in translated code report it)."""
        block = self.word_owner.get(tc_va)
        if block is None:
            raise KeyError(f"0x{tc_va:08x} is not a translated instruction")
        return block.guest_pcs[(tc_va - block.tc_start) // 4]

    # ---- translation ------------------------------------------------------------------------
    def translate(self, guest_pc: int, guest_page: int, fetch: Callable[[int], int],
                  store_callouts=frozenset()) -> Block:
        """Translate the block at ``guest_pc`` (guest-physical page ``guest_page``).

        ``fetch(va)`` returns the guest word at a guest virtual address of the same page.
        ``store_callouts`` holds guest pcs of stores to retranslate as callouts (adaptive).
        Raises :class:`TranslationCacheFull` when the cache has no room.
        """
        key = (guest_pc, guest_page)
        old = self.blocks.get(key)
        if old is not None and old.valid:
            self._invalidate_block(old)
        block = Block(guest_pc=guest_pc, guest_page=guest_page, key=key, tc_start=self.next,
                      tc_end=self.next)
        pending_stubs: List[Tuple[int, int, int]] = []     # (branch addr, target, word)
        pc = guest_pc
        page_end = (guest_pc & ~(PAGE - 1)) + PAGE
        ends = False
        n = 0
        while not ends and n < MAX_BLOCK and pc < page_end:
            word = fetch(pc) & isa.WORD_MASK
            op = word >> 24
            ins = isa.BY_OPCODE.get(op)
            if ins is None or ins.cls == isa.MONITOR:
                out = self._callout(Callout(CO_UD, pc, word=word))
                ends = True
            elif op in _BRANCHES or op == isa.OP_JMP:
                if op == isa.OP_JMP:
                    target = (pc + 4 + 4 * isa.sign24(word)) & isa.WORD_MASK
                else:
                    target = (pc + 4 + 4 * isa.sign16(word & 0xFFFF)) & isa.WORD_MASK
                out = word          # patched below, once the branch's TC address is known
                pending_stubs.append((self.next, target, word))
                ends = op == isa.OP_JMP
            elif op in _CALLOUT_OPS:
                target = ((pc + 4 + 4 * isa.sign24(word)) & isa.WORD_MASK
                          if op == isa.OP_CALL else -1)
                out = self._callout(Callout(_CALLOUT_OPS[op], pc, target=target, word=word))
                ends = True
            elif ins.cls in (isa.PRIVILEGED, isa.SENSITIVE):
                out = self._callout(Callout(CO_EMULATE, pc, word=word))
                ends = op in _ENDS_BLOCK
            elif op == isa.OP_ST and pc in store_callouts:
                out = self._callout(Callout(CO_STORE, pc, word=word))
            else:
                out = word          # innocuous (and SYSCALL, which traps by itself)
            addr = self._emit(out)
            block.guest_pcs.append(pc)
            self.word_owner[addr] = block
            pc = (pc + 4) & isa.WORD_MASK
            n += 1
        if not ends:                # fell off the block: continue at the next guest pc
            addr = self._emit(self._callout(Callout(CO_EXIT, pc, target=pc)))
            block.guest_pcs.append(pc)
            self.word_owner[addr] = block
        for branch_at, target, word in pending_stubs:
            self._link(branch_at, target, word, guest_page)
        block.tc_end = self.next
        self.blocks[key] = block
        self.by_page.setdefault(guest_page, []).append(block)
        self.stats["translations"] += 1
        self.stats["translated_insns"] += n
        return block

    def _branch_word(self, word: int, at: int, dest: int) -> int:
        offset = (dest - (at + 4)) // 4
        op = (word >> 24) & 0xFF
        if op == isa.OP_JMP:
            return isa.encode_j(op, offset)
        return (word & 0xFFFF0000) | (offset & 0xFFFF)

    def _link(self, branch_at: int, target: int, word: int, page: int) -> None:
        """Point a translated branch at its target's translation, or at a new exit stub."""
        dest = self.lookup((target, page)) if (target & ~(PAGE - 1)) == (
            self.guest_pc(branch_at) & ~(PAGE - 1)) else None
        if dest is not None:
            self._patch(branch_at, self._branch_word(word, branch_at, dest.tc_start))
            dest.incoming.append(branch_at)
            self.stats["chains"] += 1
            return
        stub = self._emit(self._callout(Callout(CO_EXIT, self.guest_pc(branch_at),
                                                target=target, word=word,
                                                branch_at=branch_at)))
        self.word_owner[stub] = self.word_owner[branch_at]
        owner = self.word_owner[branch_at]
        owner.guest_pcs.append(self.guest_pc(branch_at))
        self._patch(branch_at, self._branch_word(word, branch_at, stub))

    def chain(self, callout: Callout, dest: Block) -> bool:
        """Patch the branch behind an exit stub to jump straight to ``dest`` (chaining)."""
        at = callout.branch_at
        if at < 0 or not self.word_owner.get(at, None) or not self.word_owner[at].valid:
            return False
        self._patch(at, self._branch_word(callout.word, at, dest.tc_start))
        dest.incoming.append(at)
        callout.branch_at = -1
        self.stats["chains"] += 1
        return True

    # ---- invalidation -----------------------------------------------------------------------
    def _invalidate_block(self, block: Block) -> None:
        block.valid = False
        for addr in range(block.tc_start, block.tc_end, 4):
            self._patch(addr, 0)                       # stale code faults (#UD) if ever run
        for at in block.incoming:                      # unchain: send them to exit stubs again
            owner = self.word_owner.get(at)
            if owner is None or not owner.valid:
                continue
            word = self.word_at(at)
            target = block.guest_pc
            co = self._callout(Callout(CO_EXIT, self.guest_pc(at), target=target, word=word))
            # no room for the stub: TranslationCacheFull propagates and the monitor flushes the
            # whole cache (patching the branch itself into an exit would lose its condition)
            stub = self._emit(co)
            self.word_owner[stub] = owner
            owner.guest_pcs.append(self.guest_pc(at))
            self.callouts[co & 0xFFFF].branch_at = at
            self._patch(at, self._branch_word(word, at, stub))
        block.incoming.clear()
        self.stats["invalidations"] += 1

    def invalidate_page(self, guest_page: int) -> int:
        """Drop every block translated from ``guest_page`` (a write hit it); return how many."""
        blocks = [b for b in self.by_page.pop(guest_page, []) if b.valid]
        for b in blocks:
            self._invalidate_block(b)
        return len(blocks)

    def has_code(self, guest_page: int) -> bool:
        return any(b.valid for b in self.by_page.get(guest_page, ()))

    # ---- showing it -------------------------------------------------------------------------
    def show(self, block: Block) -> List[Tuple[str, str]]:
        """Rows ``(guest instruction, its translation)`` of a block, for tables."""
        from ..asm import disassemble_word
        rows = []
        for k, addr in enumerate(range(block.tc_start, block.tc_end, 4)):
            gpc = block.guest_pcs[k] if k < len(block.guest_pcs) else -1
            tword = self.word_at(addr)
            tr = disassemble_word(tword, pc=addr)
            if tword >> 24 == isa.OP_CALLOUT:
                co = self.callouts[tword & 0xFFFF]
                tr += f"   ; {co.kind}" + (f" -> 0x{co.target:x}" if co.target >= 0 else "")
            rows.append((f"0x{gpc:08x}" if gpc >= 0 else "", f"0x{addr:08x}  {tr}"))
        return rows
