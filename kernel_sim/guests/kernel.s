; kernel.s -- the course's guest operating system: a small Unix-like kernel for the toy ISA.
;
; One source, two builds:
;   * plain (native): the kernel owns the machine, runs in ring 0 and uses the privileged
;     instructions (WRCR, IN/OUT, CLI/STI, HLT, INVLPG, IRET/SYSRET) directly;
;   * PARAVIRT=1 (assembled with defines={"PARAVIRT": 1}): the same kernel for a Xen-style
;     monitor.  It runs in ring 1 and never executes a privileged instruction: every one is
;     replaced by a hypercall ("vmcall N", see the ABI below); page-table writes are queued and
;     handed to the monitor in batches; interrupts are masked through a flag in a page shared with
;     the monitor instead of CLI/STI.  The places that differ are the `.if PARAVIRT` blocks and the
;     macros in section 2, so the two builds can be read side by side.
;
; What the kernel does (the same things every real kernel does, in miniature):
;   boot       read the boot information the loader left at physical address 0, install the
;              trap-vector table and the kernel stack, build page tables that identity-map all of
;              physical memory for the kernel, turn paging on, read the disk's directory, start
;              the timer and create the first process ("init") from a program on disk.
;   processes  a table of NPROC entries; each process has its own address space (page
;              directory), saved registers, a parent, an exit status.  fork copies an address
;              space, wait collects a child's exit status, exit frees everything.
;   scheduling round robin.  The timer interrupt charges a tick to the running process; after
;              SLICE ticks it asks for a reschedule, which happens when the kernel returns to
;              user mode (the kernel itself is never preempted, as in classic Unix).
;   memory     a free list of 4 KiB frames; user heap pages are allocated on the first touch
;              (demand paging, from the page-fault handler); map/unmap system calls.
;   traps      #DE is counted and the faulting instruction skipped (like a SIGFPE handler that
;              returns past it); #UD, #GP and bad page faults kill the process with a message
;              and exit status 128 + vector (as a Unix shell reports 128 + signal number).
;   drivers    console (OUT console / console_write hypercall), block device (ports
;              blk_sector, blk_buffer, blk_command / block_io hypercall).
;   shutdown   when no process is left the kernel prints a last line and halts the machine.
;
; ---- Register conventions inside the kernel ----------------------------------------------
;   r14 always holds 0 in kernel code (our ISA has no zero register, unlike MIPS or RISC-V;
;       every trap entry sets it right after saving the user's registers).
;   Subroutines take arguments in r1..r3 and return a result in r0.  They may clobber
;   r0..r7 and must preserve r8..r13 (callee-saved) -- the usual C convention.
;
; ---- Memory (guest-physical addresses; the kernel sees them at the same virtual addresses) ---
;   0x00000           boot information page (written by the image builder, see BI_* below)
;   0x01000           this kernel: code, then data, page-aligned kernel page tables, the page
;                     reserved for the paravirtual shared-info page, the kernel stack
;   kernel_end..RAM   free frames (page tables, user pages), handed out by alloc_frame
;   User address space (every process): program image at USER_BASE (0x00400000), one stack page
;   below USER_STACK_TOP (0x00800000), heap from HEAP_BASE (0x10000000) to HEAP_END, paged in on
;   demand.  Virtual addresses from 0xFF000000 up belong to monitors: the kernel never uses them.
;
; ---- Address spaces and ASIDs --------------------------------------------------------------
; Every page directory maps physical memory (0..4 MiB, page-directory entry 0) for the kernel
; with supervisor-only entries: ONE shared kernel page table, like the kernel half of every
; Linux address space.  A process's page-table root is loaded together with an ASID = its slot
; in the process table + 1 (1..NPROC), so switching processes does not flush the TLB (x86 PCID).
; ASIDs are recycled with their slots: when a process exits the kernel loads its own page
; directory with ASID 0, which flushes the whole TLB, so no stale entry of the old owner of an
; ASID can survive into the next process that gets the slot.
;
; ---- The ABI: system calls, hypercalls, boot information, devices ---------------------------
; Every number the kernel shares with the image builder, the user programs and the monitors --
; system calls (SYS_*), hypercalls of the PARAVIRT build (HC_*; vmcall N, arguments r1..r3,
; result r0, < 0 = error), the boot information page (BI_*), the disk directory (DIR_*, DE_*),
; the shared info page (SI_*), the block device's commands and status codes -- is defined once,
; in kernel_sim/abi.py, and reaches this source through the generated include abi.s.
; Unknown system-call numbers return -1.  A process starts with r1 = its argument,
; sp = USER_STACK_TOP.
; Direct paging, Xen style: PTEs hold MACHINE addresses (guest-physical + boot info word 4);
; frames used as page tables are mapped read-only in the kernel's identity map, and every
; write to a page table goes through mmu_update.  A frame stops being a page table only after
; every reference to it is gone (its directory entry cleared, or -- for a directory -- it is
; no longer loaded), and only then is its identity mapping made writable again.

; The kernel, xv6-style, one file per subsystem.  The order matters: the parts are assembled
; one after the other, so it is also the order of the code in memory.
.include "machine.s"              ; the machine's constants (generated from kernel_sim/isa.py)
.include "abi.s"                  ; the guest ABI (generated from kernel_sim/abi.py)
.include "kernel/param.s"         ; 1. Constants
.include "kernel/macros.s"        ; 2. Macros
.include "kernel/boot.s"          ; 3. Boot
.include "kernel/trap.s"          ; 4. Trap entry points
.include "kernel/trapret.s"       ; 5. Leaving the kernel
.include "kernel/sched.s"         ; 6. Scheduler
.include "kernel/proc.s"          ; 7. Processes
.include "kernel/syscall.s"       ; 8. System calls
.include "kernel/vm.s"            ; 9. Memory
.include "kernel/drivers.s"       ; 10. Drivers
.include "kernel/pv.s"            ; 11. Paravirtual support routines
.include "kernel/data.s"          ; 12. Data
