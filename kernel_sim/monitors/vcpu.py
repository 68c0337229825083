"""The virtual CPU: the guest's control state, emulated instructions, reflected traps, devices.

A monitor that deprivileges its guest (trap-and-emulate, binary translation, hardware assist)
keeps the *virtual* CPU in software: the program counter, privilege level, interrupt flag and
control registers the guest believes it has.  This module holds that state and implements, in
plain Python, exactly the semantics of :mod:`kernel_sim.state` for everything the monitor does
on the guest's behalf:

* **emulating** a privileged instruction (``CLI STI IN OUT HLT WRCR RDCR INVLPG TLBFLUSH IRET
  SYSRET``) and, on a strict machine, the sensitive ones (``PUSHF POPF GETCPL RDTVB``) against the
  virtual state.  An emulated instruction *retires* as on the bare machine: ticks += 1,
  instructions += 1, its opcode is counted, pc moves on;
* **reflecting** a trap into the guest: the native delivery rules (vector table read through the
  guest's page tables, five-word frame pushed as supervisor writes, ring 0, IF = 0, the storm and
  triple-fault rules) applied to the virtual state.  The rules are written once, in
  :class:`TrapDelivery`; the paravirt monitor reflects traps into its ring-1 kernel with them
  too;
* **virtual devices**: the console (bytes go to a monitor-owned buffer), the timer (counted in
  guest ticks) and the block device (DMA into guest-physical memory from the virtual disk).

Guest memory
------------
The guest's RAM is a slice of host memory: guest-physical ``g`` is host-physical
``base + g``.  Every access here goes through :meth:`VirtualCPU.read_phys` /
:meth:`VirtualCPU.write_phys`, which check ``g`` against the guest's RAM size (beyond it: the
native bus error, ``#GP(0)``), so nothing the guest asks for can reach the monitor's memory.
Guest-virtual addresses are translated by :meth:`VirtualCPU.walk`, a software copy of the MMU's
page walk over the *guest's* page tables, with the same side effects (accessed bits on every
level, the dirty bit on a write) and the same fault codes.  There is no virtual TLB: the monitor
walks every time, which is what a native TLB miss would do.

The state lives in NumPy arrays in the machine's own layouts (``ctrl`` indices ``C_*`` and
``counters`` indices ``EV_*`` of :mod:`kernel_sim.state`), so a :class:`GuestView` can present it
to the digests exactly as a bare machine presents its own.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import isa, mmu
from .. import state as S

MASK32 = isa.WORD_MASK
SP = isa.SP
#: fault code of an access beyond the guest's RAM (the convention of kernel_sim.mmu)
BUS_ERROR = mmu.BUS_ERROR
ACC_READ, ACC_WRITE, ACC_FETCH = 0, mmu.ACC_WRITE, mmu.ACC_FETCH
#: deliveries in a row without a retired instruction that make a fault storm (state.py)
MAX_DELIVERIES = S.MAX_DELIVERIES

#: the instructions a deprivileged guest kernel traps on (emulated against the virtual CPU)
PRIVILEGED_OPS = frozenset(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.PRIVILEGED)
#: sensitive but unprivileged: they trap only on a strict machine
SENSITIVE_OPS = frozenset(i.opcode for i in isa.INSTRUCTIONS if i.cls == isa.SENSITIVE)
MNEMONIC = {i.opcode: i.mnemonic.lower() for i in isa.INSTRUCTIONS}
_CR_INDEX = dict(enumerate(S.CR_TO_CTRL))
_P, _W, _U, _A, _D = isa.PTE_P, isa.PTE_W, isa.PTE_U, isa.PTE_A, isa.PTE_D
_FRAME = isa.PTE_FRAME_MASK


class Stop(Exception):
    """The guest cannot go on (unhandled trap, triple fault, halt): ``reason`` is a STOP_* code;
    ``vector`` and ``error`` name the trap, if there was one; ``note`` says why in words, for
    the result's notes (empty when the stop reason says it all)."""

    def __init__(self, reason: int, vector: int = -1, error: int = 0, note: str = ""):
        super().__init__(note or reason)
        self.reason, self.vector, self.error, self.note = reason, vector, error, note


def _trap_name(vec: int) -> str:
    return isa.VECTOR_KEYS.get(vec, f"vector {vec}")


class TrapDelivery:
    """Delivering a trap or an interrupt to a guest whose CPU a monitor keeps in software.

    The bare CPU delivers traps in jitted code (:mod:`kernel_sim.cpu`); a monitor that reflects
    a trap into its guest must do *exactly* the same to the guest's state, or the guest would
    notice.  This is the one Python implementation of the "Trap delivery" rules of
    :mod:`kernel_sim.state`, in their order:

    1. the trap is counted (``counters[EV_VECTOR_BASE + vec]`` and ``EV_TRAPS``: a trap that
       cannot be delivered is counted too) and pc = the return pc;
    2. the handler is looked up (no handler: the run stops with ``unhandled_trap``);
    3. one more delivery without a retired instruction in between: more than
       :data:`MAX_DELIVERIES` in a row is a fault storm (``triple_fault``);
    4. the stack: a trap from a less privileged ring than the handler's switches to the kernel
       stack (the KSP), otherwise the frame goes on the current stack;
    5. the five-word frame ``old sp, old flags (IF << 9), old ring, return pc, error code``
       is pushed as supervisor writes -- every slot is translated first, so a frame that
       cannot be pushed (``triple_fault``) changes nothing in memory;
    6. the handler runs: ring = :attr:`handler_ring`, interrupts masked, pc = handler.

    A subclass says where the state lives -- ``ctrl`` and ``regs`` in the layouts of
    :mod:`kernel_sim.state` (pc, ring, sp) -- and answers the questions that differ between a
    virtual CPU and a paravirtual one: where the handler comes from (:meth:`trap_handler`),
    how deliveries in a row are counted (:meth:`deliveries_in_a_row`), the kernel stack
    (:meth:`kernel_stack`), the interrupt flag (:meth:`interrupt_flag`,
    :meth:`mask_interrupts`), the frame's memory (:meth:`frame_slot`, :meth:`write_frame`) and
    the counters (:meth:`count_trap`).
    """

    #: the ring a trap handler runs in: 0 on the bare machine; a paravirtual kernel runs in 1
    handler_ring = 0
    ctrl: np.ndarray
    regs: np.ndarray

    def deliver(self, vec: int, err: int, rp: int) -> None:
        """Deliver trap ``vec`` with error code ``err`` and return pc ``rp`` into the guest.

        Raises :class:`Stop` for an unhandled trap or a triple fault, as the bare CPU stops.
        """
        c, regs = self.ctrl, self.regs
        self.count_trap(vec)
        c[S.C_PC] = rp
        handler = self.trap_handler(vec, err, rp)
        if self.deliveries_in_a_row() > MAX_DELIVERIES:
            raise Stop(S.STOP_TRIPLE_FAULT, vec, err,
                       f"{MAX_DELIVERIES} traps in a row without a retired instruction (last: "
                       f"{_trap_name(vec)} at 0x{rp:08x})")
        old_cpl, old_sp = int(c[S.C_CPL]), int(regs[SP])
        sp = self.kernel_stack(vec, err) if old_cpl > self.handler_ring else old_sp
        frame = (old_sp, self.interrupt_flag() << 9, old_cpl, rp, err)
        slots = []
        for k in range(5):
            slot = self.frame_slot(sp - 4 * (k + 1))
            if slot < 0:
                raise Stop(S.STOP_TRIPLE_FAULT, vec, err,
                           f"cannot push the trap frame for {_trap_name(vec)}: the kernel stack "
                           f"at 0x{sp & MASK32:08x} is not writable")
            slots.append(slot)
        for slot, value in zip(slots, frame, strict=True):
            self.write_frame(slot, value)
        regs[SP] = (sp - 20) & MASK32
        c[S.C_CPL] = self.handler_ring
        self.mask_interrupts()
        c[S.C_PC] = handler

    # ---- what a subclass answers ------------------------------------------------------------
    def count_trap(self, vec: int) -> None:
        """Count one trap of vector ``vec`` (step 1)."""
        raise NotImplementedError

    def trap_handler(self, vec: int, err: int, rp: int) -> int:
        """The handler's address for ``vec``; raises :class:`Stop` when there is none."""
        raise NotImplementedError

    def deliveries_in_a_row(self) -> int:
        """Count this delivery; return how many there were since the last retired instruction."""
        raise NotImplementedError

    def kernel_stack(self, vec: int, err: int) -> int:
        """The stack a trap from a less privileged ring switches to; raises :class:`Stop`
        (``triple_fault``) if the guest has none."""
        raise NotImplementedError

    def interrupt_flag(self) -> int:
        """The guest's interrupt flag, 0 or 1, as the frame records it."""
        raise NotImplementedError

    def mask_interrupts(self) -> None:
        """IF = 0 for the handler."""
        raise NotImplementedError

    def frame_slot(self, va: int) -> int:
        """Where the frame word at guest-virtual ``va`` goes (a supervisor write), or -1."""
        raise NotImplementedError

    def write_frame(self, slot: int, value: int) -> None:
        """Store one frame word at a place :meth:`frame_slot` returned."""
        raise NotImplementedError


class VirtualCPU(TrapDelivery):
    """The guest's CPU as the monitor keeps it in software.

    Parameters
    ----------
    regs:
        the guest's general registers (shared with the host CPU that runs the guest directly).
    mem:
        host-physical memory (uint32 words); the guest's RAM is ``mem[base/4 : (base+ram)/4]``.
    base, ram_size:
        where the guest's RAM starts in host memory and how large it is (bytes).
    disk:
        the virtual disk's words (the guest's block device reads and writes them).
    levels, strict:
        the guest machine's page-table levels and whether its ISA is strict.

    ``ctrl`` (int64, the ``ctrl`` layout) is the virtual control state and ``counters`` (the
    ``counters`` layout) counts the guest-visible events of the work done here (emulated
    instructions, reflected traps, device accesses).  ``watched`` is a set of guest frame numbers
    whose writes must be reported to ``on_watched_write(gpa)`` (shadow paging watches the guest's
    page tables).  ``walk_refs`` counts the guest page-table entries the software walker read.
    ``on_paging_change()``, ``on_ptbr_change()`` and ``on_invlpg(va)`` are called after the
    emulated WRCR paging / WRCR ptbr / INVLPG, so the memory virtualization can follow.
    """

    def __init__(self, regs: np.ndarray, mem: np.ndarray, base: int, ram_size: int,
                 disk: np.ndarray, levels: int = 2, strict: bool = False,
                 console_size: int = 1 << 16):
        if base % isa.PAGE_SIZE or ram_size % isa.PAGE_SIZE or ram_size <= 0:
            raise ValueError("guest base and RAM size must be positive multiples of 4096")
        if (base + ram_size) // 4 > len(mem):
            raise ValueError("the guest's RAM does not fit in host memory")
        self.regs = regs
        self.mem = mem
        self.base = base
        self.base_word = base >> 2
        self.ram_size = ram_size
        self.ram = mem[base >> 2:(base + ram_size) >> 2]      # guest-physical memory (a view)
        self.disk = disk
        self.levels = levels
        self.strict = bool(strict)
        self.ctrl = np.zeros(S.NUM_CTRL, dtype=np.int64)
        self.counters = np.zeros(S.NUM_COUNTERS, dtype=np.int64)
        self.console = bytearray()
        self.console_size = console_size
        self.walk_refs = 0
        #: count a page fault when the software walker raises one (False under hardware
        #: assist: there the CPU counts each #PF as it delivers it to the guest)
        self.counts_page_faults = True
        self.watched: set = set()
        self.on_watched_write: Callable[[int], None] | None = None
        self.on_paging_change: Callable[[], None] | None = None
        self.on_ptbr_change: Callable[[], None] | None = None
        self.on_invlpg: Callable[[int], None] | None = None
        self.reset()

    def reset(self, entry: int = 0) -> None:
        """Power-on state, as :meth:`kernel_sim.machine.Machine.reset` leaves a bare machine."""
        c = self.ctrl
        c[:] = 0
        self.counters[:] = 0
        c[S.C_TVB] = isa.NO_TVB
        c[S.C_TIMER_DEADLINE] = S.NEVER
        c[S.C_UNTIL] = -1
        c[S.C_LEVELS] = self.levels
        c[S.C_STRICT] = int(self.strict)
        c[S.C_MEM_BYTES] = self.ram_size
        c[S.C_DISK_SECTORS] = len(self.disk) // S.BLK_SECTOR_WORDS
        c[S.C_PC] = entry
        self.regs[SP] = self.ram_size & MASK32

    # ---- guest-physical memory -------------------------------------------------------------
    def read_phys(self, gpa: int) -> int:
        """The word at guest-physical ``gpa`` (low two bits ignored); beyond RAM: #GP(0)."""
        if not 0 <= gpa < self.ram_size:
            raise _GuestFault(isa.VEC_GP, 0)
        return self.ram.item(gpa >> 2)

    def write_phys(self, gpa: int, value: int) -> None:
        """Write a word at guest-physical ``gpa`` (reports writes to watched frames)."""
        if not 0 <= gpa < self.ram_size:
            raise _GuestFault(isa.VEC_GP, 0)
        self.ram[gpa >> 2] = value & MASK32
        if (gpa >> 12) in self.watched and self.on_watched_write is not None:
            self.on_watched_write(gpa & ~3)

    # ---- the software MMU over the guest's page tables ------------------------------------
    def walk(self, va: int, acc: int, cpl: int) -> tuple[int, tuple, int, int]:
        """Walk the guest's page tables for one access, with the native walk's side effects.

        Returns ``(result, entries, perm, leaf)``: ``result`` is the guest-physical address, or
        a negative fault code (``-1 - error_code`` for a page fault, :data:`BUS_ERROR`);
        ``entries`` the guest-physical addresses of the entries read, root first; ``perm`` the
        AND of their W and U bits; ``leaf`` the final entry's value.
        """
        write = acc == ACC_WRITE
        user = cpl == 3
        err = (isa.PF_WRITE if write else 0) | (isa.PF_USER if user else 0) \
            | (isa.PF_FETCH if acc == ACC_FETCH else 0)
        levels = self.levels
        top = levels * 10 + 12
        if top < 32 and va >> top:
            return -1 - err, (), 0, 0
        table = self.ctrl.item(S.C_PTBR) & _FRAME
        perm = _W | _U
        ram = self.ram
        read = ram.item                       # .item(i) is a plain int, fast to get
        size = self.ram_size
        entries = []
        pte = 0
        for k in range(levels - 1, -1, -1):
            addr = table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)
            if addr >= size:
                return BUS_ERROR, tuple(entries), perm, pte
            self.walk_refs += 1
            entries.append(addr)
            pte = read(addr >> 2)
            if not pte & _P:
                return -1 - err, tuple(entries), perm, pte
            if not pte & _A:
                pte |= _A
                ram[addr >> 2] = pte          # an A-bit update never changes a translation
            perm &= pte
            table = pte & _FRAME
        if (write and not perm & _W) or (user and not perm & _U):
            return -1 - (err | isa.PF_PRESENT), tuple(entries), perm, pte
        if write and not pte & _D:
            pte |= _D
            ram[entries[-1] >> 2] = pte
        gpa = table | (va & 0xFFF)
        if gpa >= size:
            return BUS_ERROR, tuple(entries), perm, pte
        return gpa, tuple(entries), perm, pte

    def translate(self, va: int, acc: int, cpl: int | None = None) -> int:
        """Guest-virtual -> guest-physical for one access: an address or a negative fault code."""
        va &= MASK32
        if not self.ctrl[S.C_PAGING] & 1:
            return va if va < self.ram_size else BUS_ERROR
        return self.walk(va, acc, int(self.ctrl[S.C_CPL]) if cpl is None else cpl)[0]

    def raise_fault(self, code: int, va: int) -> tuple[int, int]:
        """A fault code -> (vector, error code), recording the page-fault state as native does."""
        if code == BUS_ERROR:
            return isa.VEC_GP, 0
        self.ctrl[S.C_FAULT_ADDR] = va
        if self.counts_page_faults:
            self.counters[S.EV_PAGE_FAULTS] += 1
        return isa.VEC_PF, -1 - code

    def _access(self, va: int, acc: int) -> int:
        """Translate or raise the guest-visible fault (for emulated instructions)."""
        pa = self.translate(va, acc)
        if pa < 0:
            raise _GuestFault(*self.raise_fault(pa, va & MASK32))
        return pa

    # ---- the timer, interrupts and trap delivery ---------------------------------------------
    def timer_check(self) -> None:
        """Step 1 of a native step: the timer fires when ticks reach its deadline."""
        c = self.ctrl
        if c.item(S.C_TICKS) >= c.item(S.C_TIMER_DEADLINE):
            c[S.C_TIMER_PENDING] = 1
            c[S.C_TIMER_DEADLINE] += c[S.C_TIMER_PERIOD]

    def interrupt_ready(self) -> bool:
        """Step 2: a pending timer interrupt is taken now (IF = 1)."""
        return bool(self.ctrl[S.C_IF]) and bool(self.ctrl[S.C_TIMER_PENDING])

    # ---- trap delivery (the rules are in TrapDelivery.deliver) -------------------------------
    def count_trap(self, vec: int) -> None:
        self.counters[S.EV_VECTOR_BASE + vec] += 1
        self.counters[S.EV_TRAPS] += 1

    def trap_handler(self, vec: int, err: int, rp: int) -> int:
        """The word at ``TVB + 4*vec``, read through the guest's tables as a supervisor read."""
        tvb = int(self.ctrl[S.C_TVB])
        if tvb == isa.NO_TVB:
            raise Stop(S.STOP_UNHANDLED_TRAP, vec, err)
        pa = self.translate(tvb + 4 * vec, ACC_READ, 0)
        if pa < 0:
            raise Stop(S.STOP_TRIPLE_FAULT, vec, err)
        handler = int(self.ram[pa >> 2])
        if handler == 0:
            raise Stop(S.STOP_UNHANDLED_TRAP, vec, err)
        return handler

    def deliveries_in_a_row(self) -> int:
        """``ctrl[C_DELIVERIES]``, which every retired instruction resets (:meth:`retire`)."""
        self.ctrl[S.C_DELIVERIES] += 1
        return int(self.ctrl[S.C_DELIVERIES])

    def kernel_stack(self, vec: int, err: int) -> int:
        return int(self.ctrl[S.C_KSP])

    def interrupt_flag(self) -> int:
        return int(self.ctrl[S.C_IF])

    def mask_interrupts(self) -> None:
        self.ctrl[S.C_IF] = 0

    def frame_slot(self, va: int) -> int:
        return self.translate(va, ACC_WRITE, 0)

    def write_frame(self, slot: int, value: int) -> None:
        self.write_phys(slot, value)

    def retire(self, op: int, npc: int) -> None:
        """An emulated instruction completes: exactly what retiring does on the bare CPU."""
        c = self.ctrl
        c[S.C_TICKS] += 1
        self.counters[S.EV_INSTRUCTIONS] += 1
        self.counters[S.EV_OP_BASE + op] += 1
        c[S.C_DELIVERIES] = 0
        c[S.C_PC] = npc & MASK32

    # ---- emulation ---------------------------------------------------------------------------
    def emulate(self, word: int) -> tuple[int, int] | None:
        """Emulate the privileged (or sensitive) instruction ``word`` at the virtual pc.

        The virtual CPU must be in ring 0 (the monitor reflects #GP otherwise).  Returns None when
        the instruction retired, or ``(vector, error)`` of the fault it raised natively (nothing
        else changed; deliver it with return pc = this instruction).  Raises :class:`Stop` when a
        HLT stops the machine.
        """
        c = self.ctrl
        regs = self.regs
        op = (word >> 24) & 0xFF
        a = (word >> 20) & 15
        imm = word & 0xFFFF
        pc = int(c[S.C_PC])
        npc = (pc + 4) & MASK32
        try:
            if op == isa.OP_CLI:
                c[S.C_IF] = 0
            elif op == isa.OP_STI:
                c[S.C_IF] = 1
            elif op == isa.OP_IN:
                regs[a] = self.port_in(imm)
            elif op == isa.OP_OUT:
                self.port_out(imm, int(regs[a]))
            elif op == isa.OP_WRCR or op == isa.OP_RDCR:
                idx = _CR_INDEX.get(imm)
                if idx is None:
                    return isa.VEC_GP, 0
                if op == isa.OP_RDCR:
                    self.counters[S.EV_CR_READS] += 1
                    if idx == S.C_PTBR:
                        self.counters[S.EV_PTBR_READS] += 1
                    regs[a] = c[idx]
                else:
                    self.counters[S.EV_CR_WRITES] += 1
                    value = int(regs[a])
                    c[idx] = value
                    if idx == S.C_PAGING:
                        self.counters[S.EV_PAGING_WRITES] += 1
                        self.counters[S.EV_TLB_FLUSHES] += 1
                        if self.on_paging_change is not None:
                            self.on_paging_change()
                    elif idx == S.C_PTBR:
                        self.counters[S.EV_PTBR_WRITES] += 1
                        if value & isa.ASID_MASK == 0:
                            self.counters[S.EV_TLB_FLUSHES] += 1
                        if self.on_ptbr_change is not None:
                            self.on_ptbr_change()
            elif op == isa.OP_INVLPG:
                self.counters[S.EV_INVLPG] += 1
                if self.on_invlpg is not None:
                    self.on_invlpg(int(regs[a]))
            elif op == isa.OP_TLBFLUSH:
                self.counters[S.EV_TLB_FLUSHES] += 1
            elif op == isa.OP_IRET or op == isa.OP_SYSRET:
                sp = int(regs[SP])
                frame = [self.read_phys(self._access(sp + 4 * k, ACC_READ)) for k in range(5)]
                npc = frame[1]
                regs[SP] = frame[4]
                if op == isa.OP_IRET:
                    self.counters[S.EV_IRET] += 1
                    c[S.C_CPL] = frame[2] & 3
                    c[S.C_IF] = (frame[3] >> 9) & 1
                else:
                    self.counters[S.EV_SYSRET] += 1
                    c[S.C_CPL] = 3
                    c[S.C_IF] = 1
            elif op == isa.OP_HLT:
                self.counters[S.EV_HLT] += 1
                self.retire(op, npc)
                self._after_hlt()
                return None
            elif op == isa.OP_PUSHF:
                va = (int(regs[SP]) - 4) & MASK32
                self.write_phys(self._access(va, ACC_WRITE), int(c[S.C_IF]) << 9)
                regs[SP] = va
            elif op == isa.OP_POPF:
                va = int(regs[SP])
                value = self.read_phys(self._access(va, ACC_READ))
                regs[SP] = (va + 4) & MASK32
                c[S.C_IF] = (value >> 9) & 1          # ring 0: POPF does restore IF
            elif op == isa.OP_GETCPL:
                regs[a] = c[S.C_CPL]
            elif op == isa.OP_RDTVB:
                regs[a] = c[S.C_TVB]
            else:
                raise ValueError(f"opcode 0x{op:02x} is not emulated by the virtual CPU")
        except _GuestFault as f:
            return f.vector, f.error
        self.retire(op, npc)
        return None

    def _after_hlt(self) -> None:
        """After HLT retired: sleep until the timer (idle ticks skipped) or stop the machine."""
        c = self.ctrl
        if c[S.C_IF] and c[S.C_TIMER_PENDING]:
            return
        if c[S.C_IF] and c[S.C_TIMER_PERIOD]:
            deadline, ticks = int(c[S.C_TIMER_DEADLINE]), int(c[S.C_TICKS])
            if deadline > ticks:
                self.counters[S.EV_IDLE_TICKS] += deadline - ticks
                c[S.C_TICKS] = deadline
            return
        raise Stop(S.STOP_HALT)

    # ---- virtual devices ---------------------------------------------------------------------
    def port_in(self, port: int) -> int:
        c = self.ctrl
        self.counters[S.EV_IO_IN] += 1
        if port == isa.PORT_TIMER:
            return int(c[S.C_TIMER_PERIOD])
        if port == isa.PORT_TICKS:
            return int(c[S.C_TICKS]) & MASK32
        if port == isa.PORT_CONSOLE:
            return 0
        if port == isa.PORT_BLK_SECTOR:
            return int(c[S.C_BLK_SECTOR])
        if port == isa.PORT_BLK_BUFFER:
            return int(c[S.C_BLK_BUFFER])
        if port == isa.PORT_BLK_COMMAND:
            return int(c[S.C_BLK_STATUS])
        if port == isa.PORT_BLK_SIZE:
            return int(c[S.C_DISK_SECTORS])
        return MASK32

    def port_out(self, port: int, value: int) -> None:
        c = self.ctrl
        self.counters[S.EV_IO_OUT] += 1
        if port == isa.PORT_CONSOLE:
            if len(self.console) < self.console_size:
                self.console.append(value & 0xFF)
            else:
                self.counters[S.EV_CONSOLE_DROPPED] += 1
        elif port == isa.PORT_TIMER:
            c[S.C_TIMER_PERIOD] = value
            c[S.C_TIMER_DEADLINE] = S.NEVER if value == 0 else int(c[S.C_TICKS]) + value
        elif port == isa.PORT_BLK_SECTOR:
            c[S.C_BLK_SECTOR] = value
        elif port == isa.PORT_BLK_BUFFER:
            c[S.C_BLK_BUFFER] = value
        elif port == isa.PORT_BLK_COMMAND:
            self.block_command(value)

    def block_command(self, command: int) -> None:
        """The block device: copy one sector between the virtual disk and guest-physical RAM."""
        c = self.ctrl
        if command not in (isa.BLK_READ, isa.BLK_WRITE):
            c[S.C_BLK_STATUS] = S.BLK_BAD_COMMAND
            return
        sector = int(c[S.C_BLK_SECTOR])
        buf = int(c[S.C_BLK_BUFFER]) & 0xFFFFFFFC
        if sector >= c[S.C_DISK_SECTORS] or buf + 4 * S.BLK_SECTOR_WORDS > self.ram_size:
            c[S.C_BLK_STATUS] = S.BLK_BAD_ADDRESS
            return
        d = sector * S.BLK_SECTOR_WORDS
        w = buf >> 2
        if command == isa.BLK_READ:
            self.ram[w:w + S.BLK_SECTOR_WORDS] = self.disk[d:d + S.BLK_SECTOR_WORDS]
            self.counters[S.EV_BLK_READS] += 1
            if self.on_watched_write is not None:
                for frame in {buf >> 12, (buf + 4 * S.BLK_SECTOR_WORDS - 1) >> 12}:
                    if frame in self.watched:
                        lo = max(buf, frame << 12)
                        hi = min(buf + 4 * S.BLK_SECTOR_WORDS, (frame + 1) << 12)
                        for gpa in range(lo, hi, 4):
                            self.on_watched_write(gpa)
        else:
            self.disk[d:d + S.BLK_SECTOR_WORDS] = self.ram[w:w + S.BLK_SECTOR_WORDS]
            self.counters[S.EV_BLK_WRITES] += 1
        c[S.C_BLK_STATUS] = S.BLK_OK

    def privilege_fault(self) -> tuple[int, int]:
        """A privileged (or strict-sensitive) instruction outside ring 0: the native #GP(0)."""
        self.counters[S.EV_PRIV_FAULTS] += 1
        return isa.VEC_GP, 0


class _GuestFault(Exception):
    """A fault an emulated access raised (internal: turned into (vector, error) by emulate)."""

    def __init__(self, vector: int, error: int):
        super().__init__(vector)
        self.vector, self.error = vector, error


def access_of(error_code: int) -> int:
    """The access (:data:`ACC_READ`, :data:`ACC_WRITE`, :data:`ACC_FETCH`) a page fault's
    error code says faulted."""
    if error_code & isa.PF_WRITE:
        return ACC_WRITE
    return ACC_FETCH if error_code & isa.PF_FETCH else ACC_READ


def is_emulated(op: int, strict: bool) -> bool:
    """Does a ring-0 guest instruction with opcode ``op`` trap when run deprivileged?"""
    return op in PRIVILEGED_OPS or (strict and op in SENSITIVE_OPS)


__all__ = ["VirtualCPU", "TrapDelivery", "Stop", "MAX_DELIVERIES", "BUS_ERROR", "ACC_READ",
           "ACC_WRITE", "ACC_FETCH",
           "PRIVILEGED_OPS", "SENSITIVE_OPS", "MNEMONIC", "access_of", "is_emulated"]
