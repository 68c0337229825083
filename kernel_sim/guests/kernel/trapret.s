; kernel/trapret.s -- leaving the kernel: return to user mode or to the kernel, rescheduling, kill_current
; Part 5 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
