; syscall.s -- the `syscall` workload.  One operation = one getpid system call (a trap into
; the kernel and back, doing almost nothing inside: the pure cost of crossing the boundary).
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of calls
        mov  r8, r1
        movi r4, 0
loop:
        beq  r8, r4, done
        movi r0, SYS_GETPID
        syscall
        addi r8, r8, -1
        jmp  loop
done:
        movi r1, 0
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
