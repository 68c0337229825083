; ring_probe.s -- a tiny ring-0 "probe kernel" for the protection-ring experiments (notebook 02).
;
; What it does, in the order a real kernel boots:
;   1. fills a trap-vector table (256 words at TVB) with the addresses of its handlers for
;      #DE (divide error), #UD (invalid opcode), #GP (general protection), #PF (page fault) and
;      the system-call vector 0x80, and installs it:  WRCR tvb
;   2. sets the kernel stack pointer the CPU loads on a trap from rings 1..3:  WRCR ksp
;   3. builds a trap frame by hand -- as if the user program had been interrupted -- with
;      ring = USER_RING, and "returns" into it with IRET.  This is how every kernel enters user
;      mode for the first time.
;
; The fault handlers (#DE, #UD, #GP) count the trap per vector in kernel memory, log the pc of
; the faulting instruction, add 4 to the saved pc in the frame (skip the instruction) and IRET,
; so the user program carries on and every faulting instruction in it is seen.
;
; System calls (number in r0, arguments in r1..r3, result in r0; the course's convention):
;   r0 = 0  exit   r1 = exit status: stored at KEXIT, then the machine halts
;   r0 = 1  write  r1 = address, r2 = length in words: one character per word to the console;
;                  returns the number of words written
;   other          returns -1 (0xffffffff)
; The handler returns with SYSRET when the caller was in ring 3, else with IRET.
;
; The user program (set by the Python side) is appended after the `.org USER_BASE` at the end.
; Define USER_RING (0..3) when assembling; without it the user program runs in ring 3.

.ifndef USER_RING
USER_RING = 3
.endif

; ---- memory map (byte addresses; the probe machine has 64 KiB) ------------------------------
KCOUNT     = 0x0800     ; 256 words: traps seen by this kernel, per vector
KLOG_N     = 0x0C00     ; number of faults seen (the log keeps the first KLOG_MAX)
KEXIT      = 0x0C04     ; exit status (0xffffffff until exit is called)
KLOG       = 0x0C10     ; KLOG_MAX entries of two words: faulting pc, vector
KLOG_MAX   = 64
TVB        = 0x1000     ; trap-vector table: 256 words
USER_BASE  = 0x2000     ; the user program starts here
USER_STACK = 0x8000     ; top of the user stack (grows down)
KSTACK     = 0x10000    ; top of the kernel stack = top of memory

VEC_DE      = 0
VEC_UD      = 6
VEC_GP      = 13
VEC_PF      = 14
VEC_SYSCALL = 0x80
SYS_EXIT    = 0
SYS_WRITE   = 1
FLAG_IF     = 0x200

; setvec VEC, HANDLER -- vector table entry VEC = HANDLER (r1 holds TVB)
.macro setvec VEC, HANDLER
        li   r2, \HANDLER
        st   r2, [r1 + 4 * \VEC]
.endm

; count_and_log -- r1 = vector; r2..r4 free; the trap frame starts at sp + 16
.macro count_and_log
        movi r4, 0
        shli r2, r1, 2
        ld   r3, [r2 + KCOUNT]      ; counters[vector] += 1
        addi r3, r3, 1
        st   r3, [r2 + KCOUNT]
        ld   r3, [r4 + KLOG_N]      ; n = number of faults so far
        addi r2, r3, 1
        st   r2, [r4 + KLOG_N]
        movi r2, KLOG_MAX
        bgeu r3, r2, full\@         ; log full: count only
        shli r3, r3, 3              ; 8 bytes per log entry
        ld   r2, [sp + 20]          ; the saved pc = the faulting instruction
        st   r2, [r3 + KLOG]
        st   r1, [r3 + KLOG + 4]
full\@:
.endm

; ==== boot ====================================================================================
start:
        li   r1, TVB
        setvec VEC_DE, k_de
        setvec VEC_UD, k_ud
        setvec VEC_GP, k_gp
        setvec VEC_PF, k_pf
        setvec VEC_SYSCALL, k_syscall
        wrcr tvb, r1                ; install the vector table
        li   r2, KSTACK
        wrcr ksp, r2                ; the stack the CPU switches to on a trap from rings 1..3
        movi r2, -1
        movi r4, 0
        st   r2, [r4 + KEXIT]
        ; a hand-built trap frame, pushed in the CPU's order: old sp, flags, ring, pc, error
        li   r2, USER_STACK
        push r2
        li   r2, FLAG_IF
        push r2
        movi r2, USER_RING
        push r2
        li   r2, USER_BASE
        push r2
        movi r2, 0
        push r2
        movi r1, 0                  ; the user program starts with clean registers
        movi r2, 0
        iret                        ; "return" into ring USER_RING at USER_BASE

; ==== fault handlers: count, log, skip the faulting instruction, return ========================
k_de:   push r1
        movi r1, VEC_DE
        jmp  k_fault
k_ud:   push r1
        movi r1, VEC_UD
        jmp  k_fault
k_gp:   push r1
        movi r1, VEC_GP
k_fault:                            ; r1 = vector; the caller's r1 is on the stack
        push r2
        push r3
        push r4
        count_and_log
        ld   r2, [sp + 20]          ; frame: [sp+16] error, [sp+20] pc, [sp+24] ring,
        addi r2, r2, 4              ;        [sp+28] flags, [sp+32] sp
        st   r2, [sp + 20]          ; resume after the faulting instruction
        pop  r4
        pop  r3
        pop  r2
        pop  r1
        iret

; #PF: paging is off in the probe, so no page fault can happen.  If one did, skipping the
; instruction would be wrong (the access never happened): count it, log it and stop.
k_pf:   push r1
        movi r1, VEC_PF
        push r2
        push r3
        push r4
        count_and_log
        hlt                         ; IF = 0 in a handler: the machine stops here

; ==== system calls ==============================================================================
k_syscall:
        push r1
        push r2
        push r3
        push r4
        movi r4, 0
        ld   r3, [r4 + KCOUNT + 4 * VEC_SYSCALL]
        addi r3, r3, 1
        st   r3, [r4 + KCOUNT + 4 * VEC_SYSCALL]
        movi r3, SYS_EXIT
        beq  r0, r3, k_exit
        movi r3, SYS_WRITE
        beq  r0, r3, k_write
        movi r0, -1                 ; unknown system call
        jmp  k_return
k_write:                            ; r1 = address, r2 = length in words
        movi r0, 0
k_wloop:
        beq  r2, r4, k_return       ; r4 = 0
        ld   r3, [r1]
        out  console, r3
        addi r1, r1, 4
        addi r2, r2, -1
        addi r0, r0, 1
        jmp  k_wloop
k_return:
        ld   r3, [sp + 24]          ; the ring the call came from (frame at sp + 16)
        movi r2, 3
        beq  r3, r2, k_to_ring3
        pop  r4
        pop  r3
        pop  r2
        pop  r1
        iret                        ; back to ring 0, 1 or 2
k_to_ring3:
        pop  r4
        pop  r3
        pop  r2
        pop  r1
        sysret                      ; back to ring 3
k_exit:
        st   r1, [r4 + KEXIT]
        hlt                         ; IF = 0 in a handler: the machine stops here

k_end:
; ==== the user program ==========================================================================
.org USER_BASE
