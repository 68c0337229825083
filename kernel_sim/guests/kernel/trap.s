; kernel/trap.s -- trap entry points: system calls, timer, #DE, #UD, #GP, #PF (demand paging)
; Part 4 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
