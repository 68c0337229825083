"""Shadow page tables: the host MMU walks tables the monitor builds from the guest's own.

A guest kernel that runs deprivileged still writes page tables that map guest-*virtual* to
guest-*physical* addresses, but the host MMU must produce host-physical addresses and must never
let the guest reach memory outside its slice.  So the monitor keeps a second set of tables -- the
**shadow** tables, in its own region of host memory -- that map guest-virtual straight to
host-physical, and points the host's PTBR at them.  The guest's tables are never walked by the
hardware.

How the shadows are kept right
------------------------------
* **Paging off**: one *physical-mode* shadow maps guest-physical ``g`` to host-physical
  ``guest_base + g`` for every page of the guest's RAM and nothing else, so an access beyond RAM
  faults in the host and becomes the native bus error, #GP(0).
* **Paging on**: shadows are built *lazily*.  A new shadow is an empty root; every access that
  finds no shadow entry is a host page fault.  The monitor then walks the **guest's** tables in
  software (:meth:`VirtualCPU.walk`: native permissions, accessed bits on every level, the dirty
  bit on a write) and either

  - fills the missing shadow entries -- a **hidden fault** (``shadow:hidden_fault``), one the
    guest never sees -- or
  - finds that the guest's own tables forbid the access and reflects a **true fault**
    (``shadow:true_fault``) with the native error code and fault address.

  A shadow leaf is writable only when the guest's leaf is already *dirty*, so the first write to
  a clean page faults and the walk sets D exactly when a native walk would.
* **Guest page tables are write-protected.**  Every guest frame that some shadow mirrors as a
  table is mapped read-only in all shadows.  A guest store to it faults (``shadow:pt_write``);
  the monitor decodes the store at the guest's pc, performs it, and drops the shadow entries
  mirrored from the guest entry it changed (in every cached shadow), invalidating the host TLB
  for them.  Guest INVLPG drops the mirrored shadow leaf.
* **Shadow roots are cached** per guest PTBR value (root | ASID), each with its own host ASID,
  so switching address spaces back and forth reuses them (``shadow:root_hit`` vs
  ``shadow:root_new``).  Toggling guest paging discards all paged shadows.

What the guest must not rely on
-------------------------------
Shadows are *more* coherent than a TLB: every write to a guest page table takes effect at once,
in every cached address space.  A guest that follows the rules -- INVLPG (or a flush, or an
untagged PTBR load) after changing an entry, and no clearing of accessed or dirty bits behind
the MMU's back -- cannot tell the difference.  One that relies on a stale TLB entry (for
instance an entry of another, ASID-tagged address space that it changed without invalidating)
would see the new mapping under the monitor and the old one on the bare machine.

Two hooks for monitors that keep more of their own in the shadows (binary translation):
:meth:`ShadowPager.pin_root_entry` installs a monitor-owned entry in every shadow root, present
and future (the translation cache's mapping; never freed with a shadow, never filled from the
guest's tables, skipped by INVLPG and by the containment check), and
:meth:`ShadowPager.protect` keeps a guest frame read-only in every shadow although the guest
may write it (a page holding translated code): a write to it is reported as
``"protected_write"`` instead of being filled.

Shadow tables come from a frame allocator over the monitor's region.  When it runs dry, every
paged shadow is dropped and rebuilt on demand (``shadow:flush_all``).  Leaf entries only ever
point into the guest's RAM: frames outside it are never mapped.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import isa
from ..state import C_CPL, C_PAGING, C_PC, C_PTBR
from .vcpu import ACC_WRITE, BUS_ERROR, MASK32, SP, VirtualCPU

P, W, U, A, D = isa.PTE_P, isa.PTE_W, isa.PTE_U, isa.PTE_A, isa.PTE_D
FRAME = isa.PTE_FRAME_MASK
PAGE = isa.PAGE_SIZE
PHYS_ASID = 1


class OutOfFrames(Exception):
    """The monitor's region has no free frame for another shadow table."""


class FrameAllocator:
    """Hands out zeroed 4 KiB frames of host memory in ``[first, limit)``.

    ``gen[f]`` grows each time frame ``f`` is freed, so a record that remembers the generation
    of the frame it points into can tell that the frame was reused.  ``ever_used`` lists every
    frame handed out at least once (the containment tests check the others are untouched).
    """

    def __init__(self, mem: np.ndarray, first: int, limit: int):
        if first % PAGE or limit % PAGE or not 0 <= first < limit <= 4 * len(mem):
            raise ValueError("the frame allocator needs a page-aligned range inside memory")
        self.mem = mem
        self.first, self.limit = first, limit
        self.free_list: list[int] = list(range(limit - PAGE, first - PAGE, -PAGE))
        self.gen: dict[int, int] = {}
        self.ever_used: set = set()

    def alloc(self) -> int:
        if not self.free_list:
            raise OutOfFrames()
        hpa = self.free_list.pop()
        self.mem[hpa >> 2:(hpa >> 2) + 1024] = 0
        self.ever_used.add(hpa)
        return hpa

    def free(self, hpa: int) -> None:
        self.gen[hpa >> 12] = self.gen.get(hpa >> 12, 0) + 1
        self.free_list.append(hpa)

    @property
    def free_frames(self) -> int:
        return len(self.free_list)


class Shadow:
    """One shadow address space: host root table, host ASID, the guest PTBR it mirrors."""

    __slots__ = ("key", "root", "asid")

    def __init__(self, key: int | None, root: int, asid: int):
        self.key, self.root, self.asid = key, root, asid


class ShadowPager:
    """Builds and maintains shadow page tables for one guest.

    ``host_ctrl`` and ``host_tlb`` are the host CPU's arrays (the pager sets the host PTBR and
    invalidates host TLB entries); ``vcpu`` is the guest's virtual CPU.  ``events`` collects the
    names of shadow events that happened inside other work (root switches, unshadowing) for the
    monitor to count.

    ``unshadow_after``: a guest page table that takes this many emulated writes in a row, with
    no shadow fill walking through it in between, is probably not a page table any more (the
    guest freed it and now fills the frame with data, as a fork copying pages does); its shadow
    tables are dropped so the writes run at full speed again (``shadow:unshadow``; KVM calls
    this write-flooding detection).  0 turns it off.
    """

    def __init__(self, vcpu: VirtualCPU, host_ctrl: np.ndarray, host_tlb: np.ndarray,
                 allocator: FrameAllocator, levels: int, max_roots: int = 32,
                 unshadow_after: int = 16):
        if not 1 <= max_roots <= 4000:
            raise ValueError(f"max_roots must be between 1 and 4000, got {max_roots}")
        if unshadow_after < 0:
            raise ValueError(f"unshadow_after must be >= 0, got {unshadow_after}")
        self.unshadow_after = unshadow_after
        self.flood: dict[int, int] = {}           # guest frame -> writes since a fill used it
        self.parent_of: dict[int, tuple] = {}     # shadow table -> (parent entry, shadow, level)
        self.v = vcpu
        self.mem = vcpu.mem
        self.base = vcpu.base
        self.ram_size = vcpu.ram_size
        self.hctrl = host_ctrl
        self.tlb = host_tlb
        self.tlb_mask = (len(host_tlb) >> 1) - 1
        self.alloc = allocator
        self.levels = levels
        self.max_roots = max_roots
        self.events: list[str] = []
        #: paged shadows by guest PTBR value, least recently used first
        self.shadows: OrderedDict[int, Shadow] = OrderedDict()
        self.table_of: dict[int, int] = {}        # shadow table hpa -> guest table gpa
        self.pt_count: dict[int, int] = {}        # guest frame -> shadow tables mirroring it
        self.entry_rmap: dict[int, dict] = {}     # guest entry gpa -> {shadow entry hpa: info}
        self.leaf_rmap: dict[int, dict] = {}      # guest frame -> {shadow leaf hpa: info}
        self.free_asids = list(range(4095, PHYS_ASID, -1))
        self.paging_on = False
        self.pinned: dict[int, int] = {}          # root index -> monitor-owned root entry
        self.protected: set[int] = set()          # guest frames kept read-only (not tables)
        vcpu.watched = self.pt_count               # writes to guest page tables are reported
        vcpu.on_watched_write = self.guest_entry_written
        vcpu.on_paging_change = self.paging_changed
        vcpu.on_ptbr_change = self.ptbr_changed
        vcpu.on_invlpg = self.invlpg
        #: bits above the ASID in the host TLB's tags (hardware assist with a VPID: vpid << 12)
        self.tag_base = 0
        self.phys = self._build_physical()
        self.active = self.phys
        self._load_host_ptbr()

    # ---- host TLB --------------------------------------------------------------------------
    def _flush_host_page(self, asid: int, va: int) -> None:
        vpn = va >> 12
        i = 2 * ((vpn ^ (vpn >> 7) ^ (vpn >> 14)) & self.tlb_mask)
        if self.tlb[i] == (((self.tag_base | asid) << 20) | vpn) + 1:
            self.tlb[i] = 0
            self.tlb[i + 1] = 0

    def _flush_host_asid(self, asid: int) -> None:
        keys = self.tlb[0::2]
        hit = (keys != 0) & (((keys - 1) >> 20) == (self.tag_base | asid))
        if hit.any():
            keys[hit] = 0

    def _load_host_ptbr(self) -> None:
        self.hctrl[C_PTBR] = self.active.root | self.active.asid

    # ---- the physical-mode shadow ----------------------------------------------------------
    def _build_physical(self) -> Shadow:
        """Map guest-physical [0, RAM) to host-physical [base, base + RAM), nothing else."""
        root = self.alloc.alloc()
        sh = Shadow(None, root, PHYS_ASID)
        self._phys_frames = [root]
        for start in range(0, self.ram_size, 1024 * PAGE):
            table = root
            for k in range(self.levels - 1, 0, -1):
                se = table + 4 * ((start >> (12 + 10 * k)) & 0x3FF)
                cur = int(self.mem[se >> 2])
                if not cur & P:
                    new = self.alloc.alloc()
                    self._phys_frames.append(new)
                    self.mem[se >> 2] = new | P | W | U | A
                    cur = int(self.mem[se >> 2])
                table = cur & FRAME
            n = min(1024, (self.ram_size - start) // PAGE)
            frames = self.base + start + PAGE * np.arange(n, dtype=np.int64)
            leaves = (frames | (P | W | U | A | D)).astype(np.uint32)
            self.mem[table >> 2:(table >> 2) + n] = leaves
        return sh

    # ---- address-space switches --------------------------------------------------------------
    def activate(self) -> None:
        """Point the host at the shadow for the guest's current paging state and PTBR."""
        v = self.v.ctrl
        if not v[C_PAGING] & 1:
            self.active = self.phys
        else:
            key = int(v[C_PTBR])
            sh = self.shadows.get(key)
            if sh is not None:
                self.shadows.move_to_end(key)
                self.events.append("shadow:root_hit")
            else:
                try:
                    sh = self._new_shadow(key)
                except OutOfFrames:
                    self.active = self.phys       # so flush_all does not rebuild the old one
                    self.flush_all()
                    sh = self._new_shadow(key)
                self.events.append("shadow:root_new")
            self.active = sh
        self._load_host_ptbr()

    def _new_shadow(self, key: int) -> Shadow:
        while len(self.shadows) >= self.max_roots or not self.free_asids:
            _, old = self.shadows.popitem(last=False)
            self._drop_shadow(old)
        root = self._new_table(key & FRAME)
        for idx, value in self.pinned.items():
            self.mem[(root >> 2) + idx] = value
        sh = Shadow(key, root, self.free_asids.pop())
        self.parent_of[root] = (None, sh, self.levels - 1)
        self.shadows[key] = sh
        return sh

    def _drop_shadow(self, sh: Shadow) -> None:
        self._free_subtree(sh.root, self.levels - 1)
        self._flush_host_asid(sh.asid)
        self.free_asids.append(sh.asid)

    def paging_changed(self) -> None:
        on = bool(self.v.ctrl[C_PAGING] & 1)
        if on != self.paging_on:
            self.paging_on = on
            for sh in list(self.shadows.values()):
                self._drop_shadow(sh)
            self.shadows.clear()
            self.activate()

    def ptbr_changed(self) -> None:
        if self.paging_on:
            self.activate()

    def flush_all(self) -> None:
        """Drop every paged shadow (the allocator ran dry); they are rebuilt on demand."""
        self.events.append("shadow:flush_all")
        for hpa in list(self.table_of):
            self.alloc.free(hpa)
        for sh in self.shadows.values():
            self.free_asids.append(sh.asid)
        self.table_of.clear()
        self.parent_of.clear()
        self.flood.clear()
        self.pt_count.clear()
        self.entry_rmap.clear()
        self.leaf_rmap.clear()
        self.shadows.clear()
        self.tlb[:] = 0
        if self.active is not self.phys:
            self.active = self._new_shadow(int(self.v.ctrl[C_PTBR]))
            self._load_host_ptbr()

    # ---- shadow tables ------------------------------------------------------------------------
    def _new_table(self, guest_table: int) -> int:
        """A zeroed shadow table mirroring the guest table at ``guest_table`` (write-protected)."""
        hpa = self.alloc.alloc()
        self.table_of[hpa] = guest_table
        if guest_table < self.ram_size:
            f = guest_table >> 12
            n = self.pt_count.get(f, 0)
            self.pt_count[f] = n + 1
            if n == 0:
                self._write_protect(f)
        return hpa

    def _free_table(self, hpa: int) -> None:
        guest_table = self.table_of.pop(hpa)
        self.parent_of.pop(hpa, None)
        f = guest_table >> 12
        n = self.pt_count.get(f)
        if n is not None:
            if n <= 1:
                del self.pt_count[f]
            else:
                self.pt_count[f] = n - 1
        self.alloc.free(hpa)

    def _free_subtree(self, table: int, level: int) -> None:
        if level > 0:
            words = self.mem[table >> 2:(table >> 2) + 1024]
            pinned = self.pinned if level == self.levels - 1 else ()
            for idx in np.nonzero(words & P)[0]:
                if int(idx) in pinned:
                    continue                 # the monitor's own entry: not a guest subtree
                self._free_subtree(int(words[idx]) & FRAME, level - 1)
        self._free_table(table)

    def _write_protect(self, gframe: int) -> None:
        """Guest frame ``gframe`` became a page table: make every shadow leaf for it read-only."""
        leaves = self.leaf_rmap.get(gframe)
        if not leaves:
            return
        target = self.base + (gframe << 12)
        gen = self.alloc.gen
        live = {}
        for se, (g, sh, va) in leaves.items():
            if gen.get(se >> 12, 0) != g:
                continue
            cur = int(self.mem[se >> 2])
            if cur & P and cur & FRAME == target:
                live[se] = (g, sh, va)
                if cur & W:
                    self.mem[se >> 2] = cur & ~W
                    self._flush_host_page(sh.asid, va)
        self.leaf_rmap[gframe] = live

    def _fill(self, sh: Shadow, va: int, entries: tuple, perm: int, leaf: int) -> None:
        """Create the shadow entries for ``va`` from a successful guest walk."""
        mem = self.mem
        gen = self.alloc.gen
        table = sh.root
        levels = self.levels
        if self.flood:                     # these guest tables are in use as page tables
            for e in entries:
                self.flood.pop(e >> 12, None)
        for j in range(levels - 1):
            k = levels - 1 - j
            se = table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)
            cur = int(mem[se >> 2])
            if cur & P:
                table = cur & FRAME
                continue
            new = self._new_table(entries[j + 1] & FRAME)
            self.parent_of[new] = (se, sh, k - 1)
            mem[se >> 2] = new | P | W | U | A
            self.entry_rmap.setdefault(entries[j], {})[se] = (gen.get(table >> 12, 0), sh, k, va)
            table = new
        se = table + 4 * ((va >> 12) & 0x3FF)
        gframe = leaf & FRAME
        flags = P | A | D | (perm & U)
        if perm & W and leaf & D and (gframe >> 12) not in self.pt_count \
                and (gframe >> 12) not in self.protected:
            flags |= W
        old = int(mem[se >> 2])
        mem[se >> 2] = (self.base + gframe) | flags
        if not old & P:
            g = gen.get(table >> 12, 0)
            self.entry_rmap.setdefault(entries[-1], {})[se] = (g, sh, 0, va & ~0xFFF)
            self.leaf_rmap.setdefault(gframe >> 12, {})[se] = (g, sh, va & ~0xFFF)

    def guest_entry_written(self, gpa: int) -> None:
        """The guest changed the entry at ``gpa``: drop every shadow entry mirrored from it."""
        if self.unshadow_after:
            f = gpa >> 12
            n = self.flood.get(f, 0) + 1
            self.flood[f] = n
        mirrored = self.entry_rmap.pop(gpa, None)
        if mirrored:
            self._drop_mirrored(mirrored)
        if self.unshadow_after and n >= self.unshadow_after:
            del self.flood[f]
            self._unshadow(f)

    def _unshadow(self, gframe: int) -> None:
        """Stop treating guest frame ``gframe`` as a page table: drop the shadow tables mirroring
        it (with their subtrees); the active shadow's root is kept."""
        tables = [t for t, g in self.table_of.items() if g >> 12 == gframe and g < self.ram_size]
        dropped = False
        for t in tables:
            info = self.parent_of.get(t)
            if info is None:
                continue                       # already freed with an earlier subtree
            se, sh, level = info
            if se is None:
                if sh is self.active:
                    continue
                self.shadows.pop(sh.key, None)
                self._drop_shadow(sh)
            else:
                self.mem[se >> 2] = 0
                self._free_subtree(t, level)
                self._flush_host_asid(sh.asid)
            dropped = True
        if dropped:
            self.events.append("shadow:unshadow")

    def _drop_mirrored(self, mirrored: dict) -> None:
        gen = self.alloc.gen
        for se, (g, sh, level, va) in mirrored.items():
            if gen.get(se >> 12, 0) != g:
                continue                     # that shadow table was freed since
            cur = int(self.mem[se >> 2])
            if not cur & P:
                continue
            self.mem[se >> 2] = 0
            if level == 0:
                self._flush_host_page(sh.asid, va)
            else:
                self._free_subtree(cur & FRAME, level - 1)
                self._flush_host_asid(sh.asid)

    def invlpg(self, va: int) -> None:
        """Guest INVLPG: drop the active shadow's leaf for ``va`` (the guest asked to re-walk)."""
        if self.active is self.phys or self._pinned_va(va & MASK32):
            return
        se = self._leaf_entry(self.active, va & MASK32)
        if se >= 0 and int(self.mem[se >> 2]) & P:
            self.mem[se >> 2] = 0
            self._flush_host_page(self.active.asid, va & MASK32)

    def _leaf_entry(self, sh: Shadow, va: int) -> int:
        table = sh.root
        for k in range(self.levels - 1, 0, -1):
            cur = int(self.mem[(table + 4 * ((va >> (12 + 10 * k)) & 0x3FF)) >> 2])
            if not cur & P:
                return -1
            table = cur & FRAME
        return table + 4 * ((va >> 12) & 0x3FF)

    def host_translate(self, va: int) -> int:
        """Guest-virtual -> host-physical through the active shadow, no side effects (-1: none)."""
        top = self.levels * 10 + 12
        if top < 32 and va >> top:
            return -1
        se = self._leaf_entry(self.active, va)
        if se < 0:
            return -1
        cur = int(self.mem[se >> 2])
        return (cur & FRAME) | (va & 0xFFF) if cur & P else -1

    # ---- monitor-owned mappings and protected frames ------------------------------------------
    def pin_root_entry(self, index: int, value: int) -> None:
        """Install ``value`` at ``index`` of every shadow root, now and in every root built later.

        The entry belongs to the monitor (it maps the monitor's own memory, such as a
        translation cache): it is never freed with a shadow, never filled from the guest's
        tables, and INVLPG does not touch it.
        """
        if not 0 <= index < 1024 or not value & P:
            raise ValueError("a pinned root entry needs an index below 1024 and the P bit")
        self.pinned[index] = value
        for sh in [self.phys, *self.shadows.values()]:
            self.mem[(sh.root >> 2) + index] = value
        self.tlb[:] = 0

    def _pinned_va(self, va: int) -> bool:
        return bool(self.pinned) and ((va >> (12 + 10 * (self.levels - 1))) & 0x3FF) in \
            self.pinned

    def protect(self, gframe: int) -> None:
        """Keep guest frame ``gframe`` read-only in every shadow (a write becomes a
        ``"protected_write"`` fault), although the guest's own tables allow writing it."""
        if gframe in self.protected:
            return
        self.protected.add(gframe)
        self._write_protect(gframe)
        if 0 <= gframe << 12 < self.ram_size:
            se = self._leaf_entry(self.phys, gframe << 12)
            cur = int(self.mem[se >> 2])
            if cur & W:
                self.mem[se >> 2] = cur & ~W
                self._flush_host_page(PHYS_ASID, gframe << 12)

    def unprotect(self, gframe: int) -> None:
        """Undo :meth:`protect` (paged shadows become writable again on the next fault)."""
        if gframe not in self.protected:
            return
        self.protected.discard(gframe)
        if 0 <= gframe << 12 < self.ram_size:
            se = self._leaf_entry(self.phys, gframe << 12)
            self.mem[se >> 2] = int(self.mem[se >> 2]) | W

    # ---- the page-fault handler ---------------------------------------------------------------
    def page_fault(self, va: int, acc: int, cpl: int) -> tuple[str, int, int]:
        """Handle a host page fault at guest-virtual ``va``.

        Returns ``(kind, vector, error)``: kind ``"hidden_fault"`` (shadow filled, retry the
        instruction), ``"true_fault"`` (reflect ``vector``/``error`` to the guest; the guest's
        fault address and page-fault count are already set), ``"bus_error"`` (reflect #GP(0)) or
        ``"pt_write"`` (a permitted store to a guest page table: emulate it; the second value
        is then the guest-physical address the store goes to), or ``"protected_write"`` (a
        permitted store to a frame :meth:`protect` keeps read-only; same second value).
        """
        v = self.v
        if not self.paging_on:
            if acc == ACC_WRITE and 0 <= va < self.ram_size and (va >> 12) in self.protected:
                return "protected_write", va, 0
            return "bus_error", isa.VEC_GP, 0      # only addresses beyond RAM are unmapped
        res, entries, perm, leaf = v.walk(va, acc, cpl)
        if res == BUS_ERROR:
            return "bus_error", isa.VEC_GP, 0
        if res < 0:
            vec, err = v.raise_fault(res, va)
            return "true_fault", vec, err
        if acc == ACC_WRITE and (res >> 12) in self.protected:
            return "protected_write", res, 0
        if acc == ACC_WRITE and (res >> 12) in self.pt_count:
            return "pt_write", res, 0
        if self._pinned_va(va):
            from .base import MonitorError
            raise MonitorError(f"the guest maps 0x{va:08x}, in a region the monitor reserves "
                               f"for itself; it cannot be shadowed")
        try:
            self._fill(self.active, va, entries, perm, leaf)
        except OutOfFrames:
            self.flush_all()
            self._fill(self.active, va, entries, perm, leaf)
        return "hidden_fault", -1, 0

    def check_containment(self) -> list[str]:
        """Problems found in the shadows: leaves outside the guest's RAM, tables outside the
        monitor's frames (an empty list when every shadow maps only the guest's slice)."""
        problems = []
        lo, hi = self.base, self.base + self.ram_size
        shadows = [self.phys] + list(self.shadows.values())
        for sh in shadows:
            stack = [(sh.root, self.levels - 1)]
            while stack:
                table, level = stack.pop()
                if not self.alloc.first <= table < self.alloc.limit:
                    problems.append(f"table 0x{table:x} outside the monitor's frames")
                    continue
                words = self.mem[table >> 2:(table >> 2) + 1024]
                for idx in np.nonzero(words & P)[0]:
                    if table == sh.root and int(idx) in self.pinned:
                        if int(words[idx]) != self.pinned[int(idx)]:
                            problems.append(f"pinned root entry {int(idx)} was changed")
                        continue             # the monitor's own mapping (checked by its owner)
                    target = int(words[idx]) & FRAME
                    if level > 0:
                        stack.append((target, level - 1))
                    elif not lo <= target < hi:
                        problems.append(f"leaf maps host frame 0x{target:x} outside the guest")
        return problems


def emulate_store(v: VirtualCPU, word: int, host_if: int = 1, known_va: int = -1,
                  known_gpa: int = -1) -> tuple[int, int] | None:
    """Perform the store instruction ``word`` at the guest's pc in software and retire it.

    Used when a store hits a write-protected guest page table: ST, PUSH, CALL, CALLR and (on a
    non-strict machine, where it runs unemulated and sees the host's IF) PUSHF.  The write goes
    through :meth:`VirtualCPU.write_phys`, which tells the pager which entry changed.  If the
    page-fault handler already walked the guest's tables for this store, ``known_va`` ->
    ``known_gpa`` saves the second walk.  Returns None, or the ``(vector, error)`` of a fault
    (nothing changed).
    """
    regs = v.regs
    op = (word >> 24) & 0xFF
    a = (word >> 20) & 15
    b = (word >> 16) & 15
    imm = word & 0xFFFF
    simm = imm - ((imm & 0x8000) << 1)
    pc = int(v.ctrl[C_PC])
    npc = (pc + 4) & MASK32
    sp = int(regs[SP])
    new_sp = None
    if op == isa.OP_ST:
        va, value = (int(regs[b]) + simm) & MASK32, int(regs[a])
    elif op == isa.OP_PUSH:
        va, value, new_sp = (sp - 4) & MASK32, int(regs[a]), (sp - 4) & MASK32
    elif op == isa.OP_PUSHF:
        va, value, new_sp = (sp - 4) & MASK32, host_if << 9, (sp - 4) & MASK32
    elif op in (isa.OP_CALL, isa.OP_CALLR):
        va, value, new_sp = (sp - 4) & MASK32, npc, (sp - 4) & MASK32
        if op == isa.OP_CALL:
            npc = (npc + 4 * isa.sign24(word)) & MASK32
        else:
            npc = int(regs[a])
    else:
        raise ValueError(f"0x{word:08x} at 0x{pc:08x} is not a store the monitor can emulate")
    pa = known_gpa if va == known_va else v.translate(va, ACC_WRITE, int(v.ctrl[C_CPL]))
    if pa < 0:
        return v.raise_fault(pa, va)
    v.write_phys(pa, value)
    if new_sp is not None:
        regs[SP] = new_sp
    v.retire(op, npc)
    return None
