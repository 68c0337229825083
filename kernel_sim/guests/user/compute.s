; compute.s -- the `compute` workload: pure arithmetic in user mode, no system call in the loop.
; One operation = one step of a linear congruential generator, x = x * 1103515245 + 12345
; (mod 2**32), starting from x = 1.  Exit status = the top byte of the final x, so the result
; can be checked by anyone who runs the same recurrence.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of steps
        li   r3, 1103515245
        movi r2, 1
        movi r4, 0
        beq  r1, r4, done
loop:
        mul  r2, r2, r3
        addi r2, r2, 12345
        addi r1, r1, -1
        bne  r1, r4, loop
done:
        shri r1, r2, 24
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
