; kernel/sched.s -- the scheduler: round robin, idle, shutdown and panic
; Part 6 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
