; ptemod.s -- the `ptemod` workload.  One operation = map a page (the kernel writes a live PTE),
; use it, unmap it (the kernel clears the PTE and INVLPGs the address).  No page fault: the
; page is mapped before it is touched.  Exit status = number of failures.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
PAGE = HEAP_BASE + 0x1000
start:                              ; r1 = number of map/unmap pairs
        mov  r8, r1
        movi r9, 0
        li   r10, PAGE
        movi r4, 0
loop:
        beq  r8, r4, done
        movi r0, SYS_MAP
        mov  r1, r10
        syscall
        beq  r0, r4, mapped
        addi r9, r9, 1
mapped:
        st   r8, [r10]
        ld   r2, [r10]
        beq  r2, r8, stored
        addi r9, r9, 1
stored:
        movi r0, SYS_UNMAP
        mov  r1, r10
        syscall
        beq  r0, r4, unmapped
        addi r9, r9, 1
unmapped:
        addi r8, r8, -1
        jmp  loop
done:
        mov  r1, r9
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
