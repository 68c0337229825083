; io.s -- the `io` workload.  One operation = one blkread system call: the kernel's block driver
; programs the device (three OUTs and an IN) to read sector 0 into a kernel buffer and returns
; its first word, which must be the disk's magic number.  Exit status = number of mismatches.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = number of reads
        mov  r8, r1
        movi r9, 0
        li   r10, DISK_MAGIC
        movi r4, 0
loop:
        beq  r8, r4, done
        movi r0, SYS_BLKREAD
        movi r1, 0
        syscall
        beq  r0, r10, ok
        addi r9, r9, 1
ok:
        addi r8, r8, -1
        jmp  loop
done:
        mov  r1, r9
        jmp  lib_exit

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
