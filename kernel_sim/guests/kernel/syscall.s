; kernel/syscall.s -- the system calls: dispatch table and one routine per call
; Part 8 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
        movi r1, BLK_READ
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
