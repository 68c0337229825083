; kernel/vm.s -- memory: the frame allocator, page tables, address spaces, TLB flushes
; Part 9 of the guest kernel, included in order by guests/kernel.s (the overview is there).
; ============================================================================================
; 9. Memory: frames and page tables
; ============================================================================================

; alloc_frame() -> r0 = physical address of a free frame, or 0.  Page faults (an exception
; that can arrive inside a system call) allocate too, so the free list is a critical section.
alloc_frame:
.if PARAVIRT
        call mmu_flush              ; a freed page-table frame is writable only once applied
.endif
        irq_save
        lw   r1, nfree
        beq  r1, r14, alloc_frame_none
        addi r1, r1, -1
        sw   r1, nfree, r2
        shli r2, r1, 2
        la   r3, free_list
        add  r2, r2, r3
        ld   r0, [r2]
        irq_restore
        ret
alloc_frame_none:
        movi r0, 0
        irq_restore
        ret

; free_frame(r1 = physical address of the frame)
free_frame:
        irq_save
        lw   r2, nfree
        shli r3, r2, 2
        la   r4, free_list
        add  r3, r3, r4
        st   r1, [r3]
        addi r2, r2, 1
        sw   r2, nfree, r3
        irq_restore
        ret

; alloc_zeroed_page() -> r0 = a frame filled with zeros, or 0
alloc_zeroed_page:
        call alloc_frame
        beq  r0, r14, azp_out
        push r0
        mov  r1, r0
        call zero_page
        pop  r0
azp_out:
        ret

; zero_page(r1 = page address)
zero_page:
        addi r3, r1, PAGE_SIZE
zero_page_loop:
        st   r14, [r1]
        st   r14, [r1 + 4]
        st   r14, [r1 + 8]
        st   r14, [r1 + 12]
        st   r14, [r1 + 16]
        st   r14, [r1 + 20]
        st   r14, [r1 + 24]
        st   r14, [r1 + 28]
        addi r1, r1, 32
        bne  r1, r3, zero_page_loop
        ret

; copy_page(r1 = destination page, r2 = source page)
copy_page:
        addi r3, r1, PAGE_SIZE
copy_page_loop:
        ld   r4, [r2]
        ld   r5, [r2 + 4]
        ld   r6, [r2 + 8]
        ld   r7, [r2 + 12]
        st   r4, [r1]
        st   r5, [r1 + 4]
        st   r6, [r1 + 8]
        st   r7, [r1 + 12]
        addi r1, r1, 16
        addi r2, r2, 16
        bne  r1, r3, copy_page_loop
        ret

; alloc_pt() -> r0 = a zeroed frame to be used as a page table (or directory), or 0
alloc_pt:
        call alloc_zeroed_page
.if PARAVIRT
        beq  r0, r14, alloc_pt_out
        push r8
        mov  r8, r0                 ; its identity mapping becomes read-only ...
        shri r1, r8, 10
        la   r2, kernel_pt
        add  r1, r1, r2
        mov  r2, r8
        to_mach r2, r3
        ori  r2, r2, PTE_P
        set_pte r1, r2
        call mmu_flush
        mov  r1, r8
        call flush_page             ; ... and no writable TLB entry for it survives
        mov  r0, r8
        pop  r8
alloc_pt_out:
.endif
        ret

; free_pt(r1 = frame) -- give back a page table no longer referenced by anything
free_pt:
.if PARAVIRT
        push r8
        mov  r8, r1                 ; writable again in the identity map
        shri r1, r8, 10
        la   r2, kernel_pt
        add  r1, r1, r2
        mov  r2, r8
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W
        set_pte r1, r2
        mov  r1, r8
        pop  r8
.endif
        jmp  free_frame

; new_address_space() -> r0 = a page directory that maps the kernel (entry 0), or 0
new_address_space:
        call alloc_pt
        beq  r0, r14, nas_out
        push r8
        mov  r8, r0
        la   r2, kernel_pt
        to_mach r2, r3
        ori  r2, r2, PTE_P | PTE_W  ; supervisor only: user code cannot touch the kernel
        set_pde r8, r2
        mov  r0, r8
        pop  r8
nas_out:
        ret

; free_address_space(r1 = page directory) -- free every user page, page table and the
; directory.  The directory must not be loaded (the caller switched away from it).
free_address_space:
        push r8
        push r9
        push r10
        push r11
        mov  r8, r1
        la   r9, user_pdes
fas_region:
        ld   r1, [r9]
        beq  r1, r14, fas_done
        shli r10, r1, 2
        add  r10, r10, r8
        ld   r1, [r10]
        andi r2, r1, PTE_P
        beq  r2, r14, fas_next_region
        shri r11, r1, 12
        shli r11, r11, 12
        to_phys r11, r2             ; r11 = the page table
        set_pte r10, r14            ; unhook it from the directory
        movi r10, 0
fas_entry:
        add  r1, r11, r10
        ld   r1, [r1]
        andi r2, r1, PTE_P
        beq  r2, r14, fas_next_entry
        shri r1, r1, 12
        shli r1, r1, 12
        to_phys r1, r2
        call free_frame
fas_next_entry:
        addi r10, r10, 4
        movi r1, PAGE_SIZE
        bne  r10, r1, fas_entry
        mov  r1, r11
        call free_pt
fas_next_region:
        addi r9, r9, 4
        jmp  fas_region
fas_done:
.if PARAVIRT
        set_pte r8, r14             ; the directory references no table any more
.endif
        mov  r1, r8
        call free_pt
        pop  r11
        pop  r10
        pop  r9
        pop  r8
        ret

; pte_lookup(r1 = page directory, r2 = va) -> r0 = kernel address of va's PTE, or 0 when va
; has no page table
pte_lookup:
        shri r3, r2, 22
        shli r3, r3, 2
        add  r3, r3, r1
        ld   r3, [r3]
        andi r4, r3, PTE_P
        beq  r4, r14, pte_lookup_none
        shri r3, r3, 12
        shli r3, r3, 12
        to_phys r3, r4
        shri r0, r2, 10
        andi r0, r0, 0xFFC
        add  r0, r0, r3
        ret
pte_lookup_none:
        movi r0, 0
        ret

; map_page(r1 = page directory, r2 = va, r3 = PTE value) -> r0 = 0, or -1 (no memory for a
; page table).  Creates the page table if needed.
map_page:
        push r8
        push r9
        push r10
        mov  r9, r2
        mov  r10, r3
        shri r8, r9, 22
        shli r8, r8, 2
        add  r8, r8, r1             ; r8 = address of the directory entry
        ld   r2, [r8]
        andi r3, r2, PTE_P
        bne  r3, r14, map_page_have
        call alloc_pt
        beq  r0, r14, map_page_fail
        to_mach r0, r3
        ori  r2, r0, USER_PTE       ; the leaf entries decide what user code may do
        set_pde r8, r2
map_page_have:
        shri r2, r2, 12
        shli r2, r2, 12
        to_phys r2, r3
        shri r1, r9, 10
        andi r1, r1, 0xFFC
        add  r1, r1, r2
        set_pte r1, r10
        movi r0, 0
        jmp  map_page_out
map_page_fail:
        movi r0, -1
map_page_out:
        pop  r10
        pop  r9
        pop  r8
        ret

; unmap_page(r1 = page directory, r2 = va) -> r0 = the frame that was mapped there, or 0.
; Clears the PTE; the caller flushes the TLB entry and frees the frame.
unmap_page:
        call pte_lookup
        beq  r0, r14, unmap_page_out
        ld   r1, [r0]
        andi r2, r1, PTE_P
        beq  r2, r14, unmap_page_none
        set_pte r0, r14
        shri r0, r1, 12
        shli r0, r0, 12
        to_phys r0, r2
        ret
unmap_page_none:
        movi r0, 0
unmap_page_out:
        ret

; switch_mm(r1 = page directory | ASID) -- load an address space
switch_mm:
.if PARAVIRT
        call mmu_flush
        to_mach r1, r2
        hcall_ok HC_NEW_BASEPTR
.else
        wrcr ptbr, r1
.endif
        ret

; flush_page(r1 = va) -- drop the TLB entry for va (current address space)
flush_page:
.if PARAVIRT
        call mmu_flush
        hcall_ok HC_INVLPG
.else
        invlpg r1
.endif
        ret
