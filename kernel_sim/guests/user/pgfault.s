; pgfault.s -- the `pgfault` workload.  One operation = one demand page fault: read a heap page
; that is not mapped (the kernel's #PF handler allocates a zeroed frame and maps it, and the
; load is retried), write and read it back, then unmap it so the next iteration faults again
; and memory stays bounded.  Exit status = number of wrong values seen.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of faults
        mov  r8, r1
        movi r9, 0
        li   r10, HEAP_BASE
        movi r4, 0
loop:
        beq  r8, r4, done
        ld   r2, [r10 + 4]          ; page fault: the page is fresh, so this reads 0
        beq  r2, r4, zeroed
        addi r9, r9, 1
zeroed:
        st   r8, [r10]              ; no fault: the page is mapped writable now
        ld   r2, [r10]
        beq  r2, r8, stored
        addi r9, r9, 1
stored:
        movi r0, SYS_UNMAP
        mov  r1, r10
        syscall
        addi r8, r8, -1
        jmp  loop
done:
        mov  r1, r9
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
