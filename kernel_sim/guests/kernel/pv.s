; kernel/pv.s -- PARAVIRT only: the virtual interrupt flag and the batched PTE update queue
; Part 11 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
