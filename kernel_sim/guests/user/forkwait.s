; forkwait.s -- the `forkwait` workload.  One operation = fork a child that exits at once with
; status 7, then wait for it (process creation, address-space copy, exit, wait).  Exit status =
; number of iterations where something went wrong.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of children
        mov  r8, r1
        movi r9, 0
        movi r4, 0
        movi r10, 7
loop:
        beq  r8, r4, done
        movi r0, SYS_FORK
        syscall
        beq  r0, r4, child
        blt  r0, r4, failed
        movi r0, SYS_WAIT
        syscall
        beq  r0, r10, next
failed:
        addi r9, r9, 1
next:
        addi r8, r8, -1
        jmp  loop
child:
        movi r1, 7
        jmp  lib_exit
done:
        mov  r1, r9
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
