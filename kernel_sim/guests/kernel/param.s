; kernel/param.s -- the kernel's own constants: limits, scheduling, the process table and pt_regs layouts
; Part 1 of the guest kernel, included in order by guests/kernel.s (the overview is there).
; ============================================================================================
; 1. Constants
; ============================================================================================

; machine (PAGE_SIZE, PTE_*, PF_*, FLAG_IF, VEC_*, NUM_VECTORS are in machine.s)
USER_PTE        = PTE_P | PTE_W | PTE_U
MAX_RAM         = 0x400000          ; one kernel page table identity-maps at most 4 MiB
MAX_FRAMES      = MAX_RAM / PAGE_SIZE

; user address space
USER_STACK_PAGE = USER_STACK_TOP - PAGE_SIZE
USER_LIMIT      = HEAP_END          ; user pointers passed to the kernel must lie below this
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

; PARAVIRT build (the hypercall numbers HC_*, shared info page offsets SI_* and the batch
; sizes DEFAULT_BATCH, MAX_BATCH are in abi.s)
