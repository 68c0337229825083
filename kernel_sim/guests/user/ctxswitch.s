; ctxswitch.s -- the `ctxswitch` workload.  fork once; then parent and child each call yield
; r1 times.  With both runnable, every yield switches to the other process: one operation =
; one yield = one context switch (an address-space switch).  The parent then waits for the
; child and exits with the child's status (0).
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = yields per process
        mov  r8, r1
        movi r4, 0
        movi r0, SYS_FORK
        syscall
        mov  r9, r0                 ; 0 in the child, the child's pid in the parent
        blt  r0, r4, failed
loop:
        beq  r8, r4, done
        movi r0, SYS_YIELD
        syscall
        addi r8, r8, -1
        jmp  loop
done:
        beq  r9, r4, child
        movi r0, SYS_WAIT
        syscall
        mov  r1, r0
        jmp  lib_exit
child:
        movi r1, 0
        jmp  lib_exit
failed:
        movi r1, 1
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
