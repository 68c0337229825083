; kernel/proc.s -- processes: the process table, creating, loading a program from disk, exit
; Part 7 of the guest kernel, included in order by guests/kernel.s (the overview is there).
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
        movi r1, BLK_READ
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
