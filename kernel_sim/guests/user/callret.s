; callret.s -- the `callret` workload.  One kcall(n) system call: the kernel runs a loop of n
; call/return pairs (kernel code full of CALL and RET is what a binary translator finds hard).
; One operation = one call/return pair.  Exit status 0 if the kernel returned n.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of pairs
        mov  r8, r1
        movi r0, SYS_KCALL
        syscall
        movi r1, 0
        beq  r0, r8, ok
        movi r1, 1
ok:
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
