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
; ---- System calls (SYSCALL; number in r0, arguments in r1..r3, result in r0) ---------------
;    0 exit(status)          never returns
;    1 write(addr, n)        print n words of user memory, one character per word -> n
;    2 getpid()              -> process id
;    3 yield()               give the CPU to the next runnable process -> 0
;    4 map(va)               map a fresh zeroed page at va (heap region) -> 0 / -1
;    5 unmap(va)             remove the page at va (heap region), INVLPG it -> 0 / -1
;    6 fork()                copy the address space -> child pid in the parent, 0 in the child
;    7 wait()                wait for a child to exit -> its exit status (its pid in r1); -1 if
;                            the caller has no children
;    8 spawn(index, arg)     new process running program `index` of the disk directory, with
;                            r1 = arg at its start -> pid / -1
;    9 kcall(n)              n call/return pairs inside the kernel -> n
;   10 blkread(sector)       read a sector into a kernel buffer through the block driver
;                            -> its first word / -1
;   11 sleep(ticks)          sleep for that many timer ticks -> 0
; Unknown numbers return -1.  A process starts with r1 = its argument, sp = USER_STACK_TOP.
;
; ---- Hypercall ABI of the PARAVIRT build (vmcall N; arguments r1..r3; result r0, < 0 = error) -
;    0 console_write(char)         1 set_trap_table(va of the 256-entry vector table)
;    2 stack_switch(kernel sp for traps from user mode)
;    3 mmu_update(va of (pte machine address, value) pairs, count) -> number applied
;    4 new_baseptr(machine address of the root table | ASID)
;    5 invlpg(va)    6 tlb_flush()    7 iret (frame at sp, as IRET)    8 sysret (as SYSRET)
;    9 set_timer(period)   10 get_ticks() -> ticks
;   11 block_io(command, sector, machine address of the buffer) -> status
;   12 block (sleep until the next event)   13 event_check (deliver a pending event now)
;   14 enable_paging   15 shutdown(status)
; Shared info page (guest-physical address in boot info word 5): word 0 = event mask (1 =
; virtual interrupts masked), word 1 = event pending, word 2 = fault address of the last page
; fault (what CR2 / RDCR fault_addr gives natively; the monitor writes it before delivering #PF,
; as Xen writes vcpu_info's cr2).
; Direct paging, Xen style: PTEs hold MACHINE addresses (guest-physical + boot info word 4);
; frames used as page tables are mapped read-only in the kernel's identity map, and every
; write to a page table goes through mmu_update.  A frame stops being a page table only after
; every reference to it is gone (its directory entry cleared, or -- for a directory -- it is
; no longer loaded), and only then is its identity mapping made writable again.

; ============================================================================================
; 1. Constants
; ============================================================================================
BOOT_MAGIC      = 0x4B53494D        ; 'KSIM' in boot info word 0
DISK_MAGIC      = 0x4B53444B        ; 'KSDK' in word 0 of the disk directory (sector 0)
DONE_MAGIC      = 0x454E4F44        ; 'DONE': written to boot info word 16 at shutdown

; boot information page (physical address 0), byte offsets
BI_MAGIC        = 0
BI_INIT         = 4                 ; directory index of the program to run as init
BI_COUNT        = 8                 ; loop count: init's argument (r1 at its start)
BI_RAM          = 12                ; RAM size in bytes
BI_MOFF         = 16                ; PARAVIRT: machine address of guest-physical 0
BI_SHINFO       = 20                ; PARAVIRT: guest-physical address of the shared info page
BI_NPROG        = 24                ; programs on disk (the directory is authoritative)
BI_BATCH        = 28                ; PARAVIRT: mmu_update batch size (0: default)
BI_DONE         = 64                ; written by the kernel at shutdown: DONE_MAGIC
BI_INIT_STATUS  = 68                ;   init's exit status
BI_NPROCS       = 72                ;   processes created
BI_KILLS        = 76                ;   processes killed by a fault

; disk directory (sector 0), byte offsets
DIR_MAGIC       = 0
DIR_COUNT       = 4
DIR_SECTORS     = 8                 ; size of the disk in sectors
DIR_ENTRIES     = 16                ; then one 16-byte entry per program:
DE_SECTOR       = 0                 ;   first sector
DE_WORDS        = 4                 ;   length in words
DE_ENTRY        = 8                 ;   entry address (virtual)
DIR_MAX         = 31
SECTOR_BYTES    = 512

; machine
PAGE_SIZE       = 4096
PTE_P           = 1
PTE_W           = 2
PTE_U           = 4
USER_PTE        = PTE_P | PTE_W | PTE_U
PF_PRESENT      = 1
FLAG_IF         = 0x200
VEC_DE          = 0
VEC_UD          = 6
VEC_GP          = 13
VEC_PF          = 14
VEC_TIMER       = 32
VEC_SYSCALL     = 0x80
NUM_VECTORS     = 256
BLK_CMD_READ    = 1
MAX_RAM         = 0x400000          ; one kernel page table identity-maps at most 4 MiB
MAX_FRAMES      = MAX_RAM / PAGE_SIZE

; user address space
USER_BASE       = 0x00400000        ; programs are assembled at this origin
USER_STACK_TOP  = 0x00800000
USER_STACK_PAGE = USER_STACK_TOP - PAGE_SIZE
HEAP_BASE       = 0x10000000        ; demand-paged heap (map/unmap work here too)
HEAP_END        = 0x10400000        ; one page table's worth: 4 MiB
USER_LIMIT      = HEAP_END          ; user pointers passed to the kernel must lie below this
MAX_PROG_WORDS  = 16384             ; a program image is at most 64 KiB
MAX_WRITE_WORDS = 4096
KCALL_MAX       = 1000000
SLEEP_MAX       = 10000

; scheduling
TIMER_PERIOD    = 10000             ; timer interrupt every 10 000 ticks (retired instructions)
SLICE           = 2                 ; a process runs at most 2 timer ticks before it is preempted
NPROC           = 8                 ; process-table slots (a power of two)
P_FREE          = 0
P_RUNNABLE      = 1
P_WAITING       = 2                 ; blocked in wait()
P_SLEEPING      = 3                 ; blocked in sleep()
P_ZOMBIE        = 4                 ; exited, status not yet collected by the parent

; process-table entry, byte offsets
PCB_STATE       = 0
PCB_PID         = 4
PCB_PARENT      = 8                 ; slot of the parent, -1 if none
PCB_PD          = 12                ; physical address of the page directory
PCB_STATUS      = 16                ; exit status (zombies)
PCB_WAKE        = 20                ; jiffies at which a sleeper wakes
PCB_SLICE       = 24                ; timer ticks left in the current time slice
PCB_DIVZERO     = 28                ; divide errors seen
PCB_SYSCALLS    = 32                ; system calls made
PCB_TICKS       = 36                ; timer ticks charged
PCB_REGS        = 48                ; saved user registers: a copy of the pt_regs block (80 bytes)
PCB_SHIFT       = 7
PCB_SIZE        = 1 << PCB_SHIFT

; pt_regs: what a trap entry leaves on the kernel stack.  The CPU pushes the trap frame
; (old sp, flags, cpl, pc, error code); the entry code then pushes r0, r1, ..., r14, so r14 ends
; up at the lowest address.  Offsets from sp after SAVE_ALL:
PT_R0           = 56                ; rK is at 56 - 4*K
PT_R1           = 52
PT_ERR          = 60
PT_PC           = 64
PT_CPL          = 68
PT_FLAGS        = 72
PT_SP           = 76
PT_SIZE         = 80
PT_WORDS        = PT_SIZE / 4

; hypercall numbers (PARAVIRT build)
HC_CONSOLE_WRITE = 0
HC_SET_TRAP_TABLE = 1
HC_STACK_SWITCH = 2
HC_MMU_UPDATE   = 3
HC_NEW_BASEPTR  = 4
HC_INVLPG       = 5
HC_TLB_FLUSH    = 6
HC_IRET         = 7
HC_SYSRET       = 8
HC_SET_TIMER    = 9
HC_GET_TICKS    = 10
HC_BLOCK_IO     = 11
HC_BLOCK        = 12
HC_EVENT_CHECK  = 13
HC_ENABLE_PAGING = 14
HC_SHUTDOWN     = 15
SI_MASK         = 0                 ; shared info page: event mask, pending flag, fault address
SI_PENDING      = 4
SI_CR2          = 8
PTE_QUEUE_MAX   = 64                ; capacity of the PTE update queue (pairs)
DEFAULT_BATCH   = 8

; ============================================================================================
; 2. Macros: the small vocabulary the rest of the kernel is written in.  The PARAVIRT build
;    swaps the privileged instructions inside them for hypercalls.
; ============================================================================================

; save_all / restore_all -- push or pop r0..r14 around the CPU's trap frame (Linux: pt_regs)
.macro save_all
        push r0
        push r1
        push r2
        push r3
        push r4
        push r5
        push r6
        push r7
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        push r14
.endm

.macro restore_all
        pop  r14
        pop  r13
        pop  r12
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        pop  r7
        pop  r6
        pop  r5
        pop  r4
        pop  r3
        pop  r2
        pop  r1
        pop  r0
.endm

; lw REG, VAR -- REG = the kernel variable VAR
.macro lw REG, VAR
        la   \REG, \VAR
        ld   \REG, [\REG]
.endm

; sw REG, VAR, TMP -- the kernel variable VAR = REG (TMP is clobbered)
.macro sw REG, VAR, TMP
        la   \TMP, \VAR
        st   \REG, [\TMP]
.endm

; pcb REG, SLOT, TMP -- REG = address of the process-table entry of slot SLOT
.macro pcb REG, SLOT, TMP
        shli \REG, \SLOT, PCB_SHIFT
        la   \TMP, proc_table
        add  \REG, \REG, \TMP
.endm

; stat VAR, TMP1, TMP2 -- VAR += 1 for a kernel statistics counter
.macro stat VAR, T1, T2
        la   \T1, \VAR
        ld   \T2, [\T1]
        addi \T2, \T2, 1
        st   \T2, [\T1]
.endm

; setvec VEC, HANDLER -- vector-table entry VEC = HANDLER (r1 = the table)
.macro setvec VEC, HANDLER
        la   r2, \HANDLER
        st   r2, [r1 + 4 * \VEC]
.endm

; Interrupt masking.  irq_disable / irq_enable are CLI / STI (Linux local_irq_disable/enable).
; irq_save / irq_restore are PUSHF; CLI and POPF (Linux local_irq_save/restore): they save
; the interrupt flag on the stack and put it back afterwards, so a critical section can be
; entered with interrupts on or off.  POPF is the instruction a real kernel uses here, and the
; one that breaks trap-and-emulate: run in ring 1 it does not trap, it silently keeps IF as it
; was.  The PARAVIRT build masks *virtual* interrupts in the shared info page instead, and
; after unmasking asks the monitor to deliver an event that arrived meanwhile.
.macro irq_disable
.if PARAVIRT
        call pv_irq_disable
.else
        cli
.endif
.endm

.macro irq_enable
.if PARAVIRT
        call pv_irq_enable
.else
        sti
.endif
.endm

.macro irq_save
.if PARAVIRT
        push r0                     ; a slot for the saved flags
        call pv_save_flags
.else
        pushf
        cli
.endif
.endm

.macro irq_restore
.if PARAVIRT
        call pv_restore_flags
        addi sp, sp, 4              ; drop the slot
.else
        popf
.endif
.endm

; k_iret / k_sysret -- return from a trap frame at sp (to the kernel or to user mode)
.macro k_iret
.if PARAVIRT
        vmcall HC_IRET
.else
        iret
.endif
.endm

.macro k_sysret
.if PARAVIRT
        vmcall HC_SYSRET
.else
        sysret
.endif
.endm

; to_mach REG, TMP / to_phys REG, TMP -- convert between guest-physical and machine addresses.
; Natively they are the same thing and the macros produce no code.
.macro to_mach REG, TMP
.if PARAVIRT
        la   \TMP, moff
        ld   \TMP, [\TMP]
        add  \REG, \REG, \TMP
.endif
.endm

.macro to_phys REG, TMP
.if PARAVIRT
        la   \TMP, moff
        ld   \TMP, [\TMP]
        sub  \REG, \REG, \TMP
.endif
.endm

; set_pte ADDR, VAL -- write page-table entry at kernel address ADDR (no register clobbered).
; Natively a plain store.  PARAVIRT: queue the update; the queue is flushed when full and
; before anything that depends on the tables (switching address space, INVLPG, returning).
.macro set_pte ADDR, VAL
.if PARAVIRT
        push \VAL
        push \ADDR
        call pv_queue_pte
        addi sp, sp, 8
.else
        st   \VAL, [\ADDR]
.endif
.endm

; set_pde ADDR, VAL -- write a page-DIRECTORY entry.  PARAVIRT: applied at once, because the
; kernel reads directory entries back right away (map_page walks the directory).
.macro set_pde ADDR, VAL
        set_pte \ADDR, \VAL
.if PARAVIRT
        call mmu_flush
.endif
.endm

; hcall_ok N -- hypercall N; a negative result is a kernel panic
.macro hcall_ok N
        vmcall \N
        blt  r0, r14, pv_hypercall_failed
.endm

; ============================================================================================
; 3. Boot
; ============================================================================================
.org 0x1000
boot:
        movi r14, 0
        la   sp, kstack_top
        ; ---- the boot information the loader left at physical address 0 ----
        ld   r1, [r14 + BI_MAGIC]
        li   r2, BOOT_MAGIC
        bne  r1, r2, boot_bad_info
        ld   r1, [r14 + BI_RAM]     ; RAM size: whole pages, room for us, at most MAX_RAM
        andi r2, r1, PAGE_SIZE - 1
        bne  r2, r14, boot_bad_info
        la   r2, kernel_end + 16 * PAGE_SIZE
        bltu r1, r2, boot_bad_info
        li   r2, MAX_RAM
        bltu r2, r1, boot_bad_info
        sw   r1, ram_size, r3
.if PARAVIRT
        ld   r1, [r14 + BI_MOFF]    ; where our memory really is in the machine
        sw   r1, moff, r3
        ld   r1, [r14 + BI_SHINFO]  ; the page we share with the monitor
        andi r2, r1, PAGE_SIZE - 1
        bne  r2, r14, boot_bad_info
        lw   r2, ram_size
        bgeu r1, r2, boot_bad_info
        sw   r1, shinfo, r3
        ld   r1, [r14 + BI_BATCH]   ; PTE updates per mmu_update hypercall
        bne  r1, r14, boot_batch_set
        movi r1, DEFAULT_BATCH
boot_batch_set:
        movi r2, PTE_QUEUE_MAX
        bgeu r2, r1, boot_batch_ok
        mov  r1, r2
boot_batch_ok:
        sw   r1, batch, r3
        call pv_irq_disable         ; virtual interrupts masked while we boot
.endif

        ; ---- the trap-vector table: every vector goes somewhere, a few to real handlers ----
        la   r1, vector_table
        la   r2, trap_unexpected
        movi r3, NUM_VECTORS
boot_vec_fill:
        st   r2, [r1]
        addi r1, r1, 4
        addi r3, r3, -1
        bne  r3, r14, boot_vec_fill
        la   r1, vector_table
        setvec VEC_DE, trap_de
        setvec VEC_UD, trap_ud
        setvec VEC_GP, trap_gp
        setvec VEC_PF, trap_pf
        setvec VEC_TIMER, trap_timer
        setvec VEC_SYSCALL, trap_syscall
.if PARAVIRT
        hcall_ok HC_SET_TRAP_TABLE  ; r1 = the table
        la   r1, kstack_top
        hcall_ok HC_STACK_SWITCH    ; the stack for traps from user mode
.else
        wrcr tvb, r1                ; install the table
        la   r1, kstack_top
        wrcr ksp, r1                ; the CPU switches to this stack on a trap from user mode
.endif

        ; ---- free frames: everything from kernel_end to the end of RAM ----
        la   r1, kernel_end
        lw   r2, ram_size
        la   r3, free_list
        movi r4, 0
boot_free_loop:
        bgeu r1, r2, boot_free_done
.if PARAVIRT
        lw   r5, shinfo             ; a monitor may put the shared info page anywhere in RAM
        beq  r1, r5, boot_free_skip
.endif
        shli r5, r4, 2
        add  r5, r5, r3
        st   r1, [r5]
        addi r4, r4, 1
boot_free_skip:
        addi r1, r1, PAGE_SIZE
        jmp  boot_free_loop
boot_free_done:
        sw   r4, nfree, r5

        ; ---- kernel page tables: identity-map all of RAM for the kernel (no PTE_U) ----
        la   r8, kernel_pt
        movi r9, 0                  ; physical address of the frame being mapped
        lw   r10, ram_size
boot_map_loop:
        mov  r2, r9
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W
.if PARAVIRT
        la   r3, kernel_pd          ; page-table pages are mapped read-only
        beq  r9, r3, boot_map_ro
        la   r3, kernel_pt
        bne  r9, r3, boot_map_set
boot_map_ro:
        xori r2, r2, PTE_W
boot_map_set:
.endif
        shri r1, r9, 10             ; entry offset = (pa >> 12) * 4
        add  r1, r1, r8
        set_pte r1, r2
        addi r9, r9, PAGE_SIZE
        bltu r9, r10, boot_map_loop
        mov  r2, r8                 ; directory entry 0 -> the kernel page table
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W
        la   r1, kernel_pd
        set_pde r1, r2
        ; ---- paging on: from here on every address goes through the page tables ----
        la   r1, kernel_pd
.if PARAVIRT
        to_mach r1, r2
        hcall_ok HC_NEW_BASEPTR
        hcall_ok HC_ENABLE_PAGING
.else
        wrcr ptbr, r1               ; ASID 0: the kernel's own tables
        movi r1, 1
        wrcr paging, r1
.endif

        ; ---- the disk's directory ----
        movi r1, BLK_CMD_READ
        movi r2, 0
        la   r3, dir_buf
        call blk_io
        bne  r0, r14, boot_bad_disk
        la   r1, dir_buf
        ld   r2, [r1 + DIR_MAGIC]
        li   r3, DISK_MAGIC
        bne  r2, r3, boot_bad_disk
        ld   r2, [r1 + DIR_COUNT]
        movi r3, DIR_MAX
        bltu r3, r2, boot_bad_disk
        sw   r2, nprog, r3
        ld   r2, [r1 + DIR_SECTORS]
        sw   r2, disk_sectors, r3

        ; ---- hello ----
        la   r1, msg_boot
        call kputs
        lw   r1, ram_size
        shri r1, r1, 10
        call kputdec
        la   r1, msg_boot_ram
        call kputs
        lw   r1, nprog
        call kputdec
        la   r1, msg_boot_progs
        call kputs
        li   r1, TIMER_PERIOD
        call kputdec
        movi r1, '\n'
        call kputc

        ; ---- init: the first process, no parent ----
        ld   r1, [r14 + BI_INIT]
        ld   r2, [r14 + BI_COUNT]
        movi r3, -1
        call proc_create
        blt  r0, r14, boot_no_init

        ; ---- the timer, then off to user mode through the normal return path ----
        li   r1, TIMER_PERIOD
.if PARAVIRT
        hcall_ok HC_SET_TIMER
.else
        out  timer, r1
.endif
        la   sp, USER_REGS          ; the pt_regs slot of the (not yet) current process
        jmp  ret_user_iret          ; current = -1: the scheduler picks init and loads it

boot_bad_info:
        la   r1, msg_bad_info
        jmp  panic
boot_bad_disk:
        la   r1, msg_bad_disk
        jmp  panic
boot_no_init:
        la   r1, msg_no_init
        jmp  panic

; ============================================================================================
; 4. Trap entry points.  Each saves the user's (or the interrupted kernel's) registers with
;    save_all, so sp points at a pt_regs block, and sets r14 = 0.  A trap from user mode
;    always finds the kernel stack empty (the CPU loaded sp = KSP), so its pt_regs sit at the
;    fixed address USER_REGS: there is ONE kernel stack (as in seL4) and the registers of a
;    process that is not running are kept in its process-table entry.
; ============================================================================================

; ---- system calls ----
trap_syscall:
        save_all
        movi r14, 0
        ld   r4, [sp + PT_CPL]      ; the kernel itself never makes system calls
        movi r5, 3
        bne  r4, r5, panic_kernel_syscall
        irq_enable                  ; system calls run with interrupts on, as in Linux
        ; Accounting.  Per-process statistics are also updated by the timer interrupt (it
        ; charges ticks), so a read-modify-write of them is a critical section: interrupts
        ; off, and back to what they were afterwards (Linux: local_irq_save/restore).
        irq_save
        lw   r4, current
        pcb  r5, r4, r6
        ld   r6, [r5 + PCB_SYSCALLS]
        addi r6, r6, 1
        st   r6, [r5 + PCB_SYSCALLS]
        stat stat_syscalls, r6, r7
syscall_irq_restore:                ; (tests look for the POPF here)
        irq_restore
        ; dispatch through the table; arguments are still in r1..r3
        movi r4, NSYSCALLS
        bgeu r0, r4, sys_bad_number
        shli r4, r0, 2
        la   r5, syscall_table
        add  r4, r4, r5
        ld   r4, [r4]
        callr r4
sys_return:
        st   r0, [sp + PT_R0]       ; the result goes back in the caller's r0
        irq_disable
        call prepare_user_return
        restore_all
        k_sysret
sys_bad_number:
        movi r0, -1
        jmp  sys_return

; ---- timer interrupt ----
trap_timer:
        save_all
        movi r14, 0
        stat jiffies, r1, r2
        lw   r1, current
        blt  r1, r14, timer_done    ; idle, nobody to charge
        pcb  r2, r1, r3
        ld   r3, [r2 + PCB_TICKS]
        addi r3, r3, 1
        st   r3, [r2 + PCB_TICKS]
        ld   r3, [r2 + PCB_SLICE]   ; time slice used up? ask for a reschedule
        addi r3, r3, -1
        st   r3, [r2 + PCB_SLICE]
        blt  r14, r3, timer_done
        movi r3, 1
        sw   r3, need_resched, r4
timer_done:
        ld   r1, [sp + PT_CPL]
        movi r2, 3
        beq  r1, r2, ret_user_iret  ; interrupted user mode: this is where preemption happens
        jmp  ret_kernel             ; interrupted the kernel: never preempt it, just go back

; ---- divide error: count it and skip the instruction ----
trap_de:
        save_all
        movi r14, 0
        ld   r1, [sp + PT_CPL]
        movi r2, 3
        bne  r1, r2, trap_de_kernel
        lw   r1, current
        pcb  r2, r1, r3
        ld   r3, [r2 + PCB_DIVZERO]
        addi r3, r3, 1
        st   r3, [r2 + PCB_DIVZERO]
        stat stat_divzero, r1, r2
        ld   r1, [sp + PT_PC]       ; resume after the faulting DIV/MOD (a fault leaves pc on it)
        addi r1, r1, 4
        st   r1, [sp + PT_PC]
        jmp  ret_user_iret
trap_de_kernel:
        la   r1, msg_de
        jmp  panic_trap

; ---- invalid opcode, general protection, anything unexpected: kill the process ----
trap_ud:
        save_all
        movi r14, 0
        la   r1, msg_ud
        movi r3, 128 + VEC_UD
        jmp  fatal_trap
trap_gp:
        save_all
        movi r14, 0
        la   r1, msg_gp
        movi r3, 128 + VEC_GP
        jmp  fatal_trap
trap_unexpected:
        save_all
        movi r14, 0
        la   r1, msg_unexpected
        movi r3, 255
fatal_trap:                         ; r1 = what happened, r3 = exit status
        ld   r4, [sp + PT_CPL]
        movi r5, 3
        bne  r4, r5, panic_trap
        ld   r2, [sp + PT_PC]
        jmp  kill_current

; ---- page fault: demand paging in the heap, otherwise a fatal error ----
trap_pf:
        save_all
        movi r14, 0
.if PARAVIRT
        lw   r8, shinfo
        ld   r8, [r8 + SI_CR2]      ; the monitor left the fault address here
.else
        rdcr r8, fault_addr
.endif
        ld   r9, [sp + PT_ERR]
        lw   r1, current
        blt  r1, r14, pf_bad
        andi r1, r9, PF_PRESENT     ; a protection fault is never fixed by mapping a page
        bne  r1, r14, pf_bad
        li   r1, HEAP_BASE
        bltu r8, r1, pf_bad
        li   r1, HEAP_END
        bgeu r8, r1, pf_bad
        call alloc_zeroed_page      ; a heap page touched for the first time: give it one
        beq  r0, r14, pf_oom
        mov  r10, r0
        call cur_pd
        mov  r1, r0
        shri r2, r8, 12
        shli r2, r2, 12
        mov  r3, r10
        to_mach r3, r4
        ori  r3, r3, USER_PTE
        call map_page
        bne  r0, r14, pf_oom_free
        stat stat_demand_faults, r1, r2
        ld   r1, [sp + PT_CPL]      ; retry the access: in user mode, or in the kernel if it
        movi r2, 3                  ; was a system call touching the heap (e.g. write)
        beq  r1, r2, ret_user_iret
        jmp  ret_kernel
pf_oom_free:
        mov  r1, r10
        call free_frame
pf_oom:
        la   r1, msg_oom
        mov  r2, r8
        movi r3, 128 + VEC_PF
        jmp  kill_current
pf_bad:
        ld   r1, [sp + PT_CPL]
        movi r2, 3
        beq  r1, r2, pf_kill
        ; The kernel faulted.  On a user address inside a system call (a bad pointer) the
        ; caller is killed and the call abandoned; anywhere else it is a kernel bug.
        lw   r1, current
        blt  r1, r14, pf_panic
        li   r1, USER_BASE
        bltu r8, r1, pf_panic
pf_kill:
        la   r1, msg_pf
        mov  r2, r8
        movi r3, 128 + VEC_PF
        jmp  kill_current
pf_panic:
        la   r1, msg_pf
        jmp  panic_trap

; ============================================================================================
; 5. Leaving the kernel
; ============================================================================================

; ret_user_iret -- return to user mode from an interrupt or exception (sp = USER_REGS).
ret_user_iret:
        call prepare_user_return
        restore_all
        k_iret

; ret_kernel -- return to interrupted kernel code (a nested trap); never reschedules.
ret_kernel:
.if PARAVIRT
        call mmu_flush              ; the interrupted code may depend on the tables
.endif
        restore_all
        k_iret

; prepare_user_return -- called with interrupts off just before returning to user mode: run
; the scheduler if the current process cannot continue or a reschedule was asked for.
prepare_user_return:
        lw   r1, current
        blt  r1, r14, pur_schedule
        pcb  r2, r1, r3
        ld   r2, [r2 + PCB_STATE]
        movi r3, P_RUNNABLE
        bne  r2, r3, pur_schedule
        lw   r2, need_resched
        beq  r2, r14, pur_done
pur_schedule:
        call schedule
pur_done:
.if PARAVIRT
        call mmu_flush              ; user code must see every queued table update
.endif
        ret

; kill_current -- the current process dies of a fault: print why, exit with a status, run
; someone else.  r1 = message, r2 = address to show, r3 = exit status.  Whatever the kernel
; was doing for the process is abandoned: the stack is reset to the process's pt_regs.
kill_current:
        mov  r8, r1
        mov  r9, r2
        mov  r10, r3
        la   r1, msg_pid
        call kputs
        call cur_pid
        mov  r1, r0
        call kputdec
        la   r1, msg_killed
        call kputs
        mov  r1, r8
        call kputs
        la   r1, msg_at
        call kputs
        mov  r1, r9
        call kputhex
        movi r1, '\n'
        call kputc
        stat stat_kills, r1, r2
        mov  r1, r10
        call do_exit
        la   sp, USER_REGS
        irq_disable
        jmp  ret_user_iret

; ============================================================================================
; 6. Scheduler
; ============================================================================================

; schedule -- pick the next process to run (round robin from the slot after the current one)
; and make it current: save the old process's registers from USER_REGS into its entry, copy
; the new one's in, and switch address space.  With nothing runnable, idle until the timer;
; with nothing left at all, shut down.  Interrupts are off.
schedule:
        push r8
        push r9
        push r10
sched_scan:
        lw   r8, current
        movi r9, 1
sched_loop:
        add  r10, r8, r9            ; candidate slot: current + 1, current + 2, ... current
        andi r10, r10, NPROC - 1
        pcb  r1, r10, r2
        ld   r2, [r1 + PCB_STATE]
        movi r3, P_RUNNABLE
        beq  r2, r3, sched_found
        movi r3, P_SLEEPING
        bne  r2, r3, sched_next
        lw   r3, jiffies            ; a sleeper whose time has come is runnable again
        ld   r4, [r1 + PCB_WAKE]
        sub  r3, r3, r4
        blt  r3, r14, sched_next
        movi r3, P_RUNNABLE
        st   r3, [r1 + PCB_STATE]
        jmp  sched_found
sched_next:
        addi r9, r9, 1
        movi r1, NPROC + 1
        bne  r9, r1, sched_loop
        ; nothing runnable: is anybody asleep (then the timer will wake them)?
        movi r9, 0
        movi r4, 0                  ; live processes
sched_count:
        pcb  r1, r9, r2
        ld   r2, [r1 + PCB_STATE]
        movi r3, P_SLEEPING
        beq  r2, r3, sched_idle
        movi r3, P_WAITING
        bne  r2, r3, sched_count_next
        addi r4, r4, 1
sched_count_next:
        addi r9, r9, 1
        movi r1, NPROC
        bne  r9, r1, sched_count
        bne  r4, r14, sched_deadlock
        jmp  shutdown               ; no process left
sched_idle:
        stat stat_idle, r1, r2
.if PARAVIRT
        call pv_irq_enable
        vmcall HC_BLOCK             ; sleep until the next event
        call pv_irq_disable
.else
        sti                         ; the idle loop: wait for the timer with interrupts on
        hlt
        cli
.endif
        jmp  sched_scan
sched_deadlock:
        la   r1, msg_deadlock
        jmp  panic
sched_found:                        ; r1 = entry, r10 = slot
        movi r2, SLICE              ; a fresh time slice
        st   r2, [r1 + PCB_SLICE]
        sw   r14, need_resched, r2
        beq  r10, r8, sched_out     ; the current process goes on
        blt  r8, r14, sched_load    ; no current process: nothing to save
        pcb  r2, r8, r3
        addi r2, r2, PCB_REGS
        la   r1, USER_REGS
        call copy_regs              ; save the registers of the process we leave
sched_load:
        pcb  r1, r10, r3
        addi r1, r1, PCB_REGS
        la   r2, USER_REGS
        call copy_regs              ; and bring in those of the next one
        sw   r10, current, r1
        pcb  r1, r10, r2
        ld   r1, [r1 + PCB_PD]
        addi r2, r10, 1             ; ASID = slot + 1
        or   r1, r1, r2
        call switch_mm
        stat stat_switches, r1, r2
sched_out:
        pop  r10
        pop  r9
        pop  r8
        ret

; copy_regs(r1 = source, r2 = destination) -- copy a pt_regs block (PT_WORDS words)
copy_regs:
        addi r3, r1, PT_SIZE
copy_regs_loop:
        ld   r4, [r1]
        ld   r5, [r1 + 4]
        ld   r6, [r1 + 8]
        ld   r7, [r1 + 12]
        st   r4, [r2]
        st   r5, [r2 + 4]
        st   r6, [r2 + 8]
        st   r7, [r2 + 12]
        addi r1, r1, 16
        addi r2, r2, 16
        bne  r1, r3, copy_regs_loop
        ret

; shutdown -- no process left: say so, leave the results in the boot information page, halt.
shutdown:
        la   r1, msg_halt
        call kputs
        lw   r1, init_status
        call kputdec
        movi r1, '\n'
        call kputc
        li   r1, DONE_MAGIC
        st   r1, [r14 + BI_DONE]
        lw   r1, init_status
        st   r1, [r14 + BI_INIT_STATUS]
        lw   r1, next_pid
        addi r1, r1, -1
        st   r1, [r14 + BI_NPROCS]
        lw   r1, stat_kills
        st   r1, [r14 + BI_KILLS]
        lw   r1, init_status
machine_halt:                       ; r1 = status
.if PARAVIRT
        vmcall HC_SHUTDOWN
.else
        cli                         ; with interrupts off, HLT stops the machine for good
        hlt
.endif
        jmp  machine_halt

; panic(r1 = message) -- a kernel bug or a broken machine: print and halt
panic:
        irq_disable
        mov  r8, r1
        la   r1, msg_panic
        call kputs
        mov  r1, r8
        call kputs
        movi r1, '\n'
        call kputc
        movi r1, -1
        jmp  machine_halt

; panic_trap(r1 = what) -- a trap in kernel mode: print what and where, halt
panic_trap:
        irq_disable
        mov  r8, r1
        la   r1, msg_panic
        call kputs
        mov  r1, r8
        call kputs
        la   r1, msg_in_kernel
        call kputs
        ld   r1, [sp + PT_PC]
        call kputhex
        movi r1, '\n'
        call kputc
        movi r1, -1
        jmp  machine_halt

panic_kernel_syscall:
        la   r1, msg_kernel_syscall
        jmp  panic_trap

; ============================================================================================
; 7. Processes
; ============================================================================================

; cur_pid() -> r0 = pid of the current process;  cur_pd() -> r0 = its page directory
cur_pid:
        lw   r0, current
        pcb  r1, r0, r2
        ld   r0, [r1 + PCB_PID]
        ret
cur_pd:
        lw   r0, current
        pcb  r1, r0, r2
        ld   r0, [r1 + PCB_PD]
        ret

; find_free_slot() -> r0 = a free process-table slot, or -1
find_free_slot:
        movi r0, 0
ffs_loop:
        pcb  r1, r0, r2
        ld   r1, [r1 + PCB_STATE]
        beq  r1, r14, ffs_out
        addi r0, r0, 1
        movi r1, NPROC
        bne  r0, r1, ffs_loop
        movi r0, -1
ffs_out:
        ret

; init_pcb(r1 = slot, r2 = page directory, r3 = parent slot) -> r0 = entry address.
; Fills in a new runnable process (registers are set by the caller) and gives it a pid.
init_pcb:
        pcb  r0, r1, r4
        movi r4, P_RUNNABLE
        st   r4, [r0 + PCB_STATE]
        lw   r4, next_pid
        st   r4, [r0 + PCB_PID]
        addi r4, r4, 1
        sw   r4, next_pid, r5
        st   r3, [r0 + PCB_PARENT]
        st   r2, [r0 + PCB_PD]
        st   r14, [r0 + PCB_STATUS]
        st   r14, [r0 + PCB_WAKE]
        movi r4, SLICE
        st   r4, [r0 + PCB_SLICE]
        st   r14, [r0 + PCB_DIVZERO]
        st   r14, [r0 + PCB_SYSCALLS]
        st   r14, [r0 + PCB_TICKS]
        ret

; proc_create(r1 = program index, r2 = argument, r3 = parent slot) -> r0 = slot, or -1.
; A new address space with the program loaded from disk and a stack page; the process will
; start at the program's entry in user mode with r1 = argument.
proc_create:
        push r8
        push r9
        push r10
        push r11
        push r12
        mov  r8, r1
        mov  r9, r2
        mov  r10, r3
        call find_free_slot
        blt  r0, r14, pc_fail
        mov  r11, r0
        call new_address_space
        beq  r0, r14, pc_fail
        mov  r12, r0
        mov  r1, r12
        mov  r2, r8
        call load_program
        beq  r0, r14, pc_fail_as
        mov  r8, r0                 ; r8 = entry address from now on
        call alloc_zeroed_page      ; the user stack
        beq  r0, r14, pc_fail_as
        push r0
        mov  r3, r0
        to_mach r3, r4
        ori  r3, r3, USER_PTE
        mov  r1, r12
        li   r2, USER_STACK_PAGE
        call map_page
        pop  r1
        beq  r0, r14, pc_mapped
        call free_frame
        jmp  pc_fail_as
pc_mapped:
        mov  r1, r11
        mov  r2, r12
        mov  r3, r10
        call init_pcb
        addi r1, r0, PCB_REGS       ; registers: all zero but r1, pc, cpl, flags and sp
        movi r2, PT_WORDS
pc_zero_regs:
        st   r14, [r1]
        addi r1, r1, 4
        addi r2, r2, -1
        bne  r2, r14, pc_zero_regs
        st   r9, [r0 + PCB_REGS + PT_R1]
        st   r8, [r0 + PCB_REGS + PT_PC]
        movi r1, 3
        st   r1, [r0 + PCB_REGS + PT_CPL]
        movi r1, FLAG_IF
        st   r1, [r0 + PCB_REGS + PT_FLAGS]
        li   r1, USER_STACK_TOP
        st   r1, [r0 + PCB_REGS + PT_SP]
        mov  r0, r11
        jmp  pc_out
pc_fail_as:
        mov  r1, r12
        call free_address_space
pc_fail:
        movi r0, -1
pc_out:
        pop  r12
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

; load_program(r1 = page directory, r2 = directory index) -> r0 = entry address, or 0.
; Allocates zeroed pages at USER_BASE and reads the program's sectors into them with the
; block driver (DMA straight into the new frames, as a real exec does through the page cache).
load_program:
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        mov  r8, r1
        lw   r3, nprog
        bgeu r2, r3, lp_fail        ; (unsigned: a negative index is huge)
        shli r3, r2, 4
        la   r4, dir_buf + DIR_ENTRIES
        add  r3, r3, r4
        ld   r10, [r3 + DE_SECTOR]
        ld   r11, [r3 + DE_WORDS]
        ld   r9, [r3 + DE_ENTRY]
        beq  r11, r14, lp_fail
        li   r4, MAX_PROG_WORDS
        bltu r4, r11, lp_fail
        li   r4, USER_BASE          ; the entry must lie inside the image
        sub  r4, r9, r4
        shli r5, r11, 2
        bgeu r4, r5, lp_fail
        addi r12, r11, 127          ; sectors to read
        shri r12, r12, 7
        li   r13, USER_BASE
lp_page:
        call alloc_zeroed_page
        beq  r0, r14, lp_fail
        mov  r11, r0                ; r11 = where the next sector goes
        mov  r3, r0
        to_mach r3, r4
        ori  r3, r3, USER_PTE
        mov  r1, r8
        mov  r2, r13
        call map_page
        bne  r0, r14, lp_fail_frame
lp_sector:
        movi r1, BLK_CMD_READ
        mov  r2, r10
        mov  r3, r11
        call blk_io
        bne  r0, r14, lp_fail
        addi r10, r10, 1
        addi r11, r11, SECTOR_BYTES
        addi r12, r12, -1
        beq  r12, r14, lp_done
        andi r1, r11, PAGE_SIZE - 1 ; page full? then the next one
        bne  r1, r14, lp_sector
        addi r13, r13, PAGE_SIZE
        jmp  lp_page
lp_done:
        mov  r0, r9
        jmp  lp_out
lp_fail_frame:
        mov  r1, r11
        call free_frame
lp_fail:
        movi r0, 0
lp_out:
        pop  r13
        pop  r12
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

; do_exit(r1 = status) -- the current process ends.  Its zombie children are freed and the
; others orphaned; it leaves its address space for the kernel's own (ASID 0: TLB flushed, so
; the ASID can be reused), frees all its memory, and either completes a parent's wait() at
; once, or stays a zombie until the parent calls wait(), or (no parent) disappears.
do_exit:
        push r8
        push r9
        push r10
        push r11
        mov  r10, r1
        lw   r8, current
        pcb  r9, r8, r1
        ld   r1, [r9 + PCB_PID]
        movi r2, 1
        bne  r1, r2, de_children
        sw   r10, init_status, r2   ; remember init's status for the last line
de_children:
        movi r11, 0
de_child:
        pcb  r1, r11, r2
        ld   r2, [r1 + PCB_STATE]
        beq  r2, r14, de_child_next
        ld   r3, [r1 + PCB_PARENT]
        bne  r3, r8, de_child_next
        movi r3, -1
        st   r3, [r1 + PCB_PARENT]
        movi r3, P_ZOMBIE
        bne  r2, r3, de_child_next
        st   r14, [r1 + PCB_STATE]  ; a zombie nobody will wait for any more
de_child_next:
        addi r11, r11, 1
        movi r1, NPROC
        bne  r11, r1, de_child
        la   r1, kernel_pd          ; ASID 0
        call switch_mm
        ld   r1, [r9 + PCB_PD]
        call free_address_space
        stat stat_exits, r1, r2
        ld   r1, [r9 + PCB_PARENT]
        blt  r1, r14, de_free
        pcb  r2, r1, r3
        ld   r3, [r2 + PCB_STATE]
        movi r4, P_WAITING
        bne  r3, r4, de_zombie
        st   r10, [r2 + PCB_REGS + PT_R0] ; the parent sleeps in wait(): finish its call
        ld   r3, [r9 + PCB_PID]
        st   r3, [r2 + PCB_REGS + PT_R1]
        movi r3, P_RUNNABLE
        st   r3, [r2 + PCB_STATE]
de_free:
        st   r14, [r9 + PCB_STATE]
        jmp  de_out
de_zombie:
        st   r10, [r9 + PCB_STATUS]
        movi r3, P_ZOMBIE
        st   r3, [r9 + PCB_STATE]
de_out:
        movi r1, -1
        sw   r1, current, r2
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

; ============================================================================================
; 8. System calls (r1..r3 = arguments, result in r0; the dispatcher stores it in the caller's
;    saved r0).  They run with interrupts on.
; ============================================================================================
syscall_table:
        .word sys_exit, sys_write, sys_getpid, sys_yield, sys_map, sys_unmap, sys_fork
        .word sys_wait, sys_spawn, sys_kcall, sys_blkread, sys_sleep
NSYSCALLS = (. - syscall_table) / 4

sys_exit:
        jmp  do_exit                ; current = -1 afterwards: the return path schedules

sys_getpid:
        jmp  cur_pid

sys_yield:
        movi r1, 1
        sw   r1, need_resched, r2
        movi r0, 0
        ret

sys_write:                          ; r1 = address, r2 = number of words
        push r8
        push r9
        push r10
        li   r3, USER_BASE          ; only user memory, and not too much of it
        bltu r1, r3, sys_write_bad
        li   r3, MAX_WRITE_WORDS
        bltu r3, r2, sys_write_bad
        shli r3, r2, 2
        add  r3, r3, r1
        bltu r3, r1, sys_write_bad
        li   r4, USER_LIMIT
        bltu r4, r3, sys_write_bad
        mov  r8, r1
        mov  r9, r2
        mov  r10, r2
sys_write_loop:
        beq  r9, r14, sys_write_done
        ld   r1, [r8]               ; may page-fault on a fresh heap page: that is handled
        call kputc
        addi r8, r8, 4
        addi r9, r9, -1
        jmp  sys_write_loop
sys_write_done:
        mov  r0, r10
        jmp  sys_write_out
sys_write_bad:
        movi r0, -1
sys_write_out:
        pop  r10
        pop  r9
        pop  r8
        ret

; heap_va(r1 = va) -> r0 = the page address, or 0 if va is outside the heap region
heap_va:
        shri r0, r1, 12
        shli r0, r0, 12
        li   r2, HEAP_BASE
        bltu r0, r2, heap_va_bad
        li   r2, HEAP_END
        bltu r0, r2, heap_va_ok
heap_va_bad:
        movi r0, 0
heap_va_ok:
        ret

sys_map:                            ; r1 = virtual address in the heap region
        push r8
        push r9
        call heap_va
        beq  r0, r14, sys_map_bad
        mov  r8, r0
        call cur_pd
        mov  r9, r0
        mov  r1, r9
        mov  r2, r8
        call pte_lookup
        beq  r0, r14, sys_map_new
        ld   r1, [r0]
        andi r1, r1, PTE_P
        bne  r1, r14, sys_map_bad   ; already mapped
sys_map_new:
        call alloc_zeroed_page
        beq  r0, r14, sys_map_bad
        push r0
        mov  r3, r0
        to_mach r3, r4
        ori  r3, r3, USER_PTE
        mov  r1, r9
        mov  r2, r8
        call map_page
        pop  r1
        beq  r0, r14, sys_map_out
        call free_frame
sys_map_bad:
        movi r0, -1
sys_map_out:
        pop  r9
        pop  r8
        ret

sys_unmap:                          ; r1 = virtual address in the heap region
        push r8
        call heap_va
        beq  r0, r14, sys_unmap_bad
        mov  r8, r0
        call cur_pd
        mov  r1, r0
        mov  r2, r8
        call unmap_page             ; clears the PTE
        beq  r0, r14, sys_unmap_bad
        push r0
        mov  r1, r8
        call flush_page             ; INVLPG: the TLB may still hold the old translation
        pop  r1
        call free_frame             ; only now may the frame be reused
        movi r0, 0
        jmp  sys_unmap_out
sys_unmap_bad:
        movi r0, -1
sys_unmap_out:
        pop  r8
        ret

; fork: a new process with a copy of every user page of the caller and the caller's saved
; registers, except r0 = 0.  (Real kernels share the pages copy-on-write; we copy eagerly.)
sys_fork:
        push r8
        push r9
        push r10
        push r11
        push r12
        push r13
        call find_free_slot
        blt  r0, r14, fork_fail
        mov  r8, r0                 ; r8 = child slot
        call new_address_space
        beq  r0, r14, fork_fail
        mov  r9, r0                 ; r9 = child page directory
        call cur_pd
        mov  r10, r0                ; r10 = parent page directory
        la   r11, user_pdes         ; the directory slots that can hold user page tables
fork_region:
        ld   r1, [r11]
        beq  r1, r14, fork_copied
        shli r1, r1, 2
        add  r1, r1, r10
        ld   r1, [r1]
        andi r2, r1, PTE_P
        beq  r2, r14, fork_next_region
        shri r12, r1, 12
        shli r12, r12, 12
        to_phys r12, r2             ; r12 = the parent's page table
        movi r13, 0                 ; r13 = byte offset of the entry
fork_entry:
        add  r1, r12, r13
        ld   r1, [r1]
        andi r2, r1, PTE_P
        beq  r2, r14, fork_next_entry
        push r1                     ; the parent's PTE
        call alloc_frame
        beq  r0, r14, fork_fail_pop
        push r0                     ; the child's frame
        mov  r1, r0
        ld   r2, [sp + 4]
        shri r2, r2, 12
        shli r2, r2, 12
        to_phys r2, r3
        call copy_page
        ld   r2, [r11]              ; va = directory index << 22 | entry index << 12
        shli r2, r2, 22
        shli r3, r13, 10
        or   r2, r2, r3
        ld   r3, [sp]
        to_mach r3, r4
        ld   r4, [sp + 4]
        andi r4, r4, USER_PTE       ; same permissions as the parent's page
        or   r3, r3, r4
        mov  r1, r9
        call map_page
        pop  r1
        addi sp, sp, 4
        bne  r0, r14, fork_fail_free
fork_next_entry:
        addi r13, r13, 4
        movi r1, PAGE_SIZE
        bne  r13, r1, fork_entry
fork_next_region:
        addi r11, r11, 4
        jmp  fork_region
fork_copied:
        mov  r1, r8
        mov  r2, r9
        lw   r3, current
        call init_pcb
        mov  r12, r0
        la   r1, USER_REGS          ; the child returns from the same system call ...
        addi r2, r12, PCB_REGS
        call copy_regs
        st   r14, [r12 + PCB_REGS + PT_R0] ; ... with result 0
        stat stat_forks, r1, r2
        ld   r0, [r12 + PCB_PID]
        jmp  fork_out
fork_fail_pop:
        addi sp, sp, 4
        jmp  fork_fail_as
fork_fail_free:
        call free_frame
fork_fail_as:
        mov  r1, r9
        call free_address_space
fork_fail:
        movi r0, -1
fork_out:
        pop  r13
        pop  r12
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

sys_wait:
        lw   r1, current
        movi r2, 0                  ; slot
        movi r7, 0                  ; has children?
sys_wait_loop:
        pcb  r3, r2, r4
        ld   r4, [r3 + PCB_STATE]
        beq  r4, r14, sys_wait_next
        ld   r5, [r3 + PCB_PARENT]
        bne  r5, r1, sys_wait_next
        movi r7, 1
        movi r5, P_ZOMBIE
        bne  r4, r5, sys_wait_next
        ld   r0, [r3 + PCB_STATUS]  ; a zombie child: collect it
        ld   r5, [r3 + PCB_PID]
        la   r6, USER_REGS
        st   r5, [r6 + PT_R1]
        st   r14, [r3 + PCB_STATE]
        ret
sys_wait_next:
        addi r2, r2, 1
        movi r4, NPROC
        bne  r2, r4, sys_wait_loop
        bne  r7, r14, sys_wait_block
        movi r0, -1                 ; no children at all
        ret
sys_wait_block:
        pcb  r3, r1, r4             ; block; the child's exit fills in r0 and r1
        movi r4, P_WAITING
        st   r4, [r3 + PCB_STATE]
        movi r0, 0
        ret

sys_spawn:                          ; r1 = program index, r2 = argument
        lw   r3, current
        call proc_create
        blt  r0, r14, sys_spawn_out
        pcb  r1, r0, r2
        ld   r0, [r1 + PCB_PID]
sys_spawn_out:
        ret

sys_kcall:                          ; r1 = n: n call/return pairs in the kernel
        li   r2, KCALL_MAX
        bltu r2, r1, sys_kcall_bad
        movi r0, 0
sys_kcall_loop:
        beq  r1, r14, sys_kcall_done
        call kcall_leaf
        addi r1, r1, -1
        jmp  sys_kcall_loop
sys_kcall_bad:
        movi r0, -1
sys_kcall_done:
        ret
kcall_leaf:
        addi r0, r0, 1
        ret

sys_blkread:                        ; r1 = sector
        lw   r2, disk_sectors
        bgeu r1, r2, sys_blkread_bad
        mov  r2, r1
        movi r1, BLK_CMD_READ
        la   r3, blk_buf
        call blk_io
        bne  r0, r14, sys_blkread_bad
        lw   r0, blk_buf
        ret
sys_blkread_bad:
        movi r0, -1
        ret

sys_sleep:                          ; r1 = timer ticks
        li   r2, SLEEP_MAX
        bltu r2, r1, sys_sleep_bad
        lw   r2, jiffies
        add  r2, r2, r1
        lw   r3, current
        pcb  r4, r3, r5
        st   r2, [r4 + PCB_WAKE]
        movi r5, P_SLEEPING
        st   r5, [r4 + PCB_STATE]
        movi r0, 0
        ret
sys_sleep_bad:
        movi r0, -1
        ret

; ============================================================================================
; 9. Memory: frames and page tables
; ============================================================================================

; alloc_frame() -> r0 = physical address of a free frame, or 0.  Page faults (an exception
; that can arrive inside a system call) allocate too, so the free list is a critical section.
alloc_frame:
.if PARAVIRT
        call mmu_flush              ; a freed page-table frame is writable only once applied
.endif
        irq_save
        lw   r1, nfree
        beq  r1, r14, alloc_frame_none
        addi r1, r1, -1
        sw   r1, nfree, r2
        shli r2, r1, 2
        la   r3, free_list
        add  r2, r2, r3
        ld   r0, [r2]
        irq_restore
        ret
alloc_frame_none:
        movi r0, 0
        irq_restore
        ret

; free_frame(r1 = physical address of the frame)
free_frame:
        irq_save
        lw   r2, nfree
        shli r3, r2, 2
        la   r4, free_list
        add  r3, r3, r4
        st   r1, [r3]
        addi r2, r2, 1
        sw   r2, nfree, r3
        irq_restore
        ret

; alloc_zeroed_page() -> r0 = a frame filled with zeros, or 0
alloc_zeroed_page:
        call alloc_frame
        beq  r0, r14, azp_out
        push r0
        mov  r1, r0
        call zero_page
        pop  r0
azp_out:
        ret

; zero_page(r1 = page address)
zero_page:
        addi r3, r1, PAGE_SIZE
zero_page_loop:
        st   r14, [r1]
        st   r14, [r1 + 4]
        st   r14, [r1 + 8]
        st   r14, [r1 + 12]
        st   r14, [r1 + 16]
        st   r14, [r1 + 20]
        st   r14, [r1 + 24]
        st   r14, [r1 + 28]
        addi r1, r1, 32
        bne  r1, r3, zero_page_loop
        ret

; copy_page(r1 = destination page, r2 = source page)
copy_page:
        addi r3, r1, PAGE_SIZE
copy_page_loop:
        ld   r4, [r2]
        ld   r5, [r2 + 4]
        ld   r6, [r2 + 8]
        ld   r7, [r2 + 12]
        st   r4, [r1]
        st   r5, [r1 + 4]
        st   r6, [r1 + 8]
        st   r7, [r1 + 12]
        addi r1, r1, 16
        addi r2, r2, 16
        bne  r1, r3, copy_page_loop
        ret

; alloc_pt() -> r0 = a zeroed frame to be used as a page table (or directory), or 0
alloc_pt:
        call alloc_zeroed_page
.if PARAVIRT
        beq  r0, r14, alloc_pt_out
        push r8
        mov  r8, r0                 ; its identity mapping becomes read-only ...
        shri r1, r8, 10
        la   r2, kernel_pt
        add  r1, r1, r2
        mov  r2, r8
        to_mach r2, r3
        ori  r2, r2, PTE_P
        set_pte r1, r2
        call mmu_flush
        mov  r1, r8
        call flush_page             ; ... and no writable TLB entry for it survives
        mov  r0, r8
        pop  r8
alloc_pt_out:
.endif
        ret

; free_pt(r1 = frame) -- give back a page table no longer referenced by anything
free_pt:
.if PARAVIRT
        push r8
        mov  r8, r1                 ; writable again in the identity map
        shri r1, r8, 10
        la   r2, kernel_pt
        add  r1, r1, r2
        mov  r2, r8
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W
        set_pte r1, r2
        mov  r1, r8
        pop  r8
.endif
        jmp  free_frame

; new_address_space() -> r0 = a page directory that maps the kernel (entry 0), or 0
new_address_space:
        call alloc_pt
        beq  r0, r14, nas_out
        push r8
        mov  r8, r0
        la   r2, kernel_pt
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W  ; supervisor only: user code cannot touch the kernel
        set_pde r8, r2
        mov  r0, r8
        pop  r8
nas_out:
        ret

; free_address_space(r1 = page directory) -- free every user page, page table and the
; directory.  The directory must not be loaded (the caller switched away from it).
free_address_space:
        push r8
        push r9
        push r10
        push r11
        mov  r8, r1
        la   r9, user_pdes
fas_region:
        ld   r1, [r9]
        beq  r1, r14, fas_done
        shli r10, r1, 2
        add  r10, r10, r8
        ld   r1, [r10]
        andi r2, r1, PTE_P
        beq  r2, r14, fas_next_region
        shri r11, r1, 12
        shli r11, r11, 12
        to_phys r11, r2             ; r11 = the page table
        set_pte r10, r14            ; unhook it from the directory
        movi r10, 0
fas_entry:
        add  r1, r11, r10
        ld   r1, [r1]
        andi r2, r1, PTE_P
        beq  r2, r14, fas_next_entry
        shri r1, r1, 12
        shli r1, r1, 12
        to_phys r1, r2
        call free_frame
fas_next_entry:
        addi r10, r10, 4
        movi r1, PAGE_SIZE
        bne  r10, r1, fas_entry
        mov  r1, r11
        call free_pt
fas_next_region:
        addi r9, r9, 4
        jmp  fas_region
fas_done:
.if PARAVIRT
        set_pte r8, r14             ; the directory references no table any more
.endif
        mov  r1, r8
        call free_pt
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

; pte_lookup(r1 = page directory, r2 = va) -> r0 = kernel address of va's PTE, or 0 when va
; has no page table
pte_lookup:
        shri r3, r2, 22
        shli r3, r3, 2
        add  r3, r3, r1
        ld   r3, [r3]
        andi r4, r3, PTE_P
        beq  r4, r14, pte_lookup_none
        shri r3, r3, 12
        shli r3, r3, 12
        to_phys r3, r4
        shri r0, r2, 10
        andi r0, r0, 0xFFC
        add  r0, r0, r3
        ret
pte_lookup_none:
        movi r0, 0
        ret

; map_page(r1 = page directory, r2 = va, r3 = PTE value) -> r0 = 0, or -1 (no memory for a
; page table).  Creates the page table if needed.
map_page:
        push r8
        push r9
        push r10
        mov  r9, r2
        mov  r10, r3
        shri r8, r9, 22
        shli r8, r8, 2
        add  r8, r8, r1             ; r8 = address of the directory entry
        ld   r2, [r8]
        andi r3, r2, PTE_P
        bne  r3, r14, map_page_have
        call alloc_pt
        beq  r0, r14, map_page_fail
        to_mach r0, r3
        ori  r2, r0, USER_PTE       ; the leaf entries decide what user code may do
        set_pde r8, r2
map_page_have:
        shri r2, r2, 12
        shli r2, r2, 12
        to_phys r2, r3
        shri r1, r9, 10
        andi r1, r1, 0xFFC
        add  r1, r1, r2
        set_pte r1, r10
        movi r0, 0
        jmp  map_page_out
map_page_fail:
        movi r0, -1
map_page_out:
        pop  r10
        pop  r9
        pop  r8
        ret

; unmap_page(r1 = page directory, r2 = va) -> r0 = the frame that was mapped there, or 0.
; Clears the PTE; the caller flushes the TLB entry and frees the frame.
unmap_page:
        call pte_lookup
        beq  r0, r14, unmap_page_out
        ld   r1, [r0]
        andi r2, r1, PTE_P
        beq  r2, r14, unmap_page_none
        set_pte r0, r14
        shri r0, r1, 12
        shli r0, r0, 12
        to_phys r0, r2
        ret
unmap_page_none:
        movi r0, 0
unmap_page_out:
        ret

; switch_mm(r1 = page directory | ASID) -- load an address space
switch_mm:
.if PARAVIRT
        call mmu_flush
        to_mach r1, r2
        hcall_ok HC_NEW_BASEPTR
.else
        wrcr ptbr, r1
.endif
        ret

; flush_page(r1 = va) -- drop the TLB entry for va (current address space)
flush_page:
.if PARAVIRT
        call mmu_flush
        hcall_ok HC_INVLPG
.else
        invlpg r1
.endif
        ret

; ============================================================================================
; 10. Drivers
; ============================================================================================

; kputc(r1 = character) -- the console driver (clobbers r0 only)
kputc:
.if PARAVIRT
        vmcall HC_CONSOLE_WRITE
.else
        out  console, r1
.endif
        ret

; blk_io(r1 = command, r2 = sector, r3 = physical buffer address) -> r0 = status (0 = ok).
; The block driver.  Natively: program the device's three registers, then read the status;
; the sequence is a critical section (an interrupt handler using the device between two
; OUTs would corrupt the request).
blk_io:
.if PARAVIRT
        to_mach r3, r4
        vmcall HC_BLOCK_IO
.else
        irq_save
        out  blk_sector, r2
        out  blk_buffer, r3
        out  blk_command, r1        ; the transfer happens here (synchronous DMA)
        in   r0, blk_command
        irq_restore
.endif
        ret

; kputs(r1 = address of a .string: one character per word, 0-terminated)
kputs:
        push r8
        mov  r8, r1
kputs_loop:
        ld   r1, [r8]
        beq  r1, r14, kputs_done
        call kputc
        addi r8, r8, 4
        jmp  kputs_loop
kputs_done:
        pop  r8
        ret

; kputdec(r1 = signed value) -- print in decimal
kputdec:
        push r8
        push r9
        mov  r8, r1
        bge  r8, r14, kputdec_pos
        movi r1, '-'
        call kputc
        sub  r8, r14, r8
kputdec_pos:
        movi r9, 0
kputdec_split:                      ; push the digits, least significant first
        movi r2, 10
        mod  r1, r8, r2
        div  r8, r8, r2
        push r1
        addi r9, r9, 1
        bne  r8, r14, kputdec_split
kputdec_print:
        pop  r1
        addi r1, r1, '0'
        call kputc
        addi r9, r9, -1
        bne  r9, r14, kputdec_print
        pop  r9
        pop  r8
        ret

; kputhex(r1 = value) -- print as 0x followed by 8 hex digits
kputhex:
        push r8
        push r9
        mov  r8, r1
        movi r1, '0'
        call kputc
        movi r1, 'x'
        call kputc
        movi r9, 28
kputhex_loop:
        shr  r1, r8, r9
        andi r1, r1, 15
        movi r2, 10
        blt  r1, r2, kputhex_digit
        addi r1, r1, 'a' - 10 - '0'
kputhex_digit:
        addi r1, r1, '0'
        call kputc
        addi r9, r9, -4
        bge  r9, r14, kputhex_loop
        pop  r9
        pop  r8
        ret

; ============================================================================================
; 11. Paravirtual support routines (PARAVIRT build only): virtual interrupt flag, PTE update queue
; ============================================================================================
.if PARAVIRT
; pv_irq_disable -- mask virtual interrupts (all registers preserved)
pv_irq_disable:
        push r1
        push r2
        lw   r1, shinfo
        movi r2, 1
        st   r2, [r1 + SI_MASK]
        pop  r2
        pop  r1
        ret

; pv_irq_enable -- unmask; if an event arrived while masked, have it delivered now
pv_irq_enable:
        push r0
        push r1
        push r2
        lw   r1, shinfo
        movi r2, 0
        st   r2, [r1 + SI_MASK]
        ld   r1, [r1 + SI_PENDING]
        beq  r1, r2, pv_irq_enable_out
        vmcall HC_EVENT_CHECK
pv_irq_enable_out:
        pop  r2
        pop  r1
        pop  r0
        ret

; pv_save_flags -- [sp + 4] = FLAGS image of the virtual interrupt flag; then mask
pv_save_flags:
        push r1
        push r2
        lw   r1, shinfo
        ld   r2, [r1 + SI_MASK]
        xori r2, r2, 1              ; not masked <=> IF
        shli r2, r2, 9
        st   r2, [sp + 12]
        movi r2, 1
        st   r2, [r1 + SI_MASK]
        pop  r2
        pop  r1
        ret

; pv_restore_flags -- back to the state saved in [sp + 4]
pv_restore_flags:
        push r1
        ld   r1, [sp + 8]
        andi r1, r1, FLAG_IF
        bne  r1, r14, pv_restore_on
        pop  r1
        jmp  pv_irq_disable
pv_restore_on:
        pop  r1
        jmp  pv_irq_enable

; pv_queue_pte -- stack: [sp + 4] = kernel address of the entry, [sp + 8] = new value.
; Appends (machine address, value) to the queue; flushes it when BATCH entries are waiting.
; The queue is shared with interrupt handlers (every return from a trap flushes it), so
; appending is a critical section: virtual interrupts are masked meanwhile.
pv_queue_pte:
        push r1
        push r2
        push r3
        push r4
        irq_save                    ; from here: [sp + 24] = address, [sp + 28] = value
        la   r1, pte_qlen
        ld   r2, [r1]
        shli r3, r2, 3
        la   r4, pte_queue
        add  r3, r3, r4
        ld   r4, [sp + 24]
        to_mach r4, r1
        st   r4, [r3]
        ld   r4, [sp + 28]
        st   r4, [r3 + 4]
        addi r2, r2, 1
        sw   r2, pte_qlen, r1
        lw   r3, batch
        bltu r2, r3, pv_queue_out
        call mmu_flush
pv_queue_out:
        irq_restore
        pop  r4
        pop  r3
        pop  r2
        pop  r1
        ret

; mmu_flush -- hand the queued updates to the monitor in one mmu_update hypercall
mmu_flush:
        push r0
        push r1
        push r2
        irq_save
        lw   r2, pte_qlen
        beq  r2, r14, mmu_flush_out
        la   r1, pte_queue
        vmcall HC_MMU_UPDATE        ; r1 = the pairs, r2 = how many -> r0 = how many applied
        bne  r0, r2, mmu_flush_refused
        sw   r14, pte_qlen, r1
mmu_flush_out:
        irq_restore
        pop  r2
        pop  r1
        pop  r0
        ret
mmu_flush_refused:
        la   r1, msg_mmu_refused
        jmp  panic

pv_hypercall_failed:
        la   r1, msg_hypercall
        jmp  panic
.endif
text_end:                           ; end of the kernel's code

; ============================================================================================
; 12. Data
; ============================================================================================
current:            .word -1        ; slot of the running process, -1 if none
need_resched:       .word 0
jiffies:            .word 0         ; timer interrupts since boot
next_pid:           .word 1
nfree:              .word 0
ram_size:           .word 0
nprog:              .word 0
disk_sectors:       .word 0
init_status:        .word 0
moff:               .word 0         ; PARAVIRT: machine offset
shinfo:             .word 0         ; PARAVIRT: shared info page
batch:              .word DEFAULT_BATCH ; PARAVIRT: PTE updates per mmu_update
pte_qlen:           .word 0
; statistics (tests and notebooks read them through the kernel's symbol table)
stat_syscalls:      .word 0
stat_switches:      .word 0
stat_demand_faults: .word 0
stat_divzero:       .word 0
stat_forks:         .word 0
stat_exits:         .word 0
stat_kills:         .word 0
stat_idle:          .word 0
; page-directory slots that hold user page tables: the image and stack (0x00400000-0x007FFFFF)
; and the heap (0x10000000-0x103FFFFF); 0 ends the list (slot 0 is the kernel's)
user_pdes:          .word USER_BASE >> 22, HEAP_BASE >> 22, 0

msg_boot:           .string "[kernel] boot: "
msg_boot_ram:       .string " KiB RAM, "
msg_boot_progs:     .string " programs, timer period "
msg_halt:           .string "[kernel] halt: init exit status "
msg_pid:            .string "[kernel] pid "
msg_killed:         .string " killed: "
msg_at:             .string " at "
msg_in_kernel:      .string " in the kernel at pc "
msg_panic:          .string "[kernel] panic: "
msg_de:             .string "divide error"
msg_ud:             .string "invalid opcode"
msg_gp:             .string "general protection fault"
msg_pf:             .string "page fault"
msg_oom:            .string "out of memory"
msg_unexpected:     .string "unexpected trap"
msg_kernel_syscall: .string "system call"
msg_bad_info:       .string "bad boot information"
msg_bad_disk:       .string "no program directory on the disk"
msg_no_init:        .string "cannot start init"
msg_deadlock:       .string "every process is waiting"
msg_mmu_refused:    .string "mmu_update refused"
msg_hypercall:      .string "hypercall failed"

.align 16
vector_table:       .space NUM_VECTORS * 4
proc_table:         .space NPROC * PCB_SIZE
free_list:          .space MAX_FRAMES * 4
dir_buf:            .space SECTOR_BYTES   ; the disk directory (sector 0), kept after boot
blk_buf:            .space SECTOR_BYTES   ; blkread's buffer
pte_queue:          .space PTE_QUEUE_MAX * 8

.align PAGE_SIZE
kernel_pd:          .space PAGE_SIZE      ; the kernel's page directory (boot, idle, exit)
kernel_pt:          .space PAGE_SIZE      ; identity map of RAM, shared by every address space
shared_info_page:   .space PAGE_SIZE      ; reserved in both builds: the PV shared info page
kstack:             .space 2 * PAGE_SIZE  ; the kernel stack
kstack_top:
kernel_end:
USER_REGS = kstack_top - PT_SIZE          ; pt_regs of a trap from user mode
