; kernel/macros.s -- the macros the rest is written in (save_all, irq_*, set_pte, k_iret ...); most .if
;   PARAVIRT blocks are here
; Part 2 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
