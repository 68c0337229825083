; kernel/boot.s -- boot: check the boot information, vector table, identity map, paging, the disk
;   directory, init
; Part 3 of the guest kernel, included in order by guests/kernel.s (the overview is there).
; ============================================================================================
; 3. Boot
; ============================================================================================
.org KERNEL_BASE
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
        movi r2, MAX_BATCH
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
        movi r1, BLK_READ
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
