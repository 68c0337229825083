; _lib.s -- the user library: every user program includes it at its end (.include "_lib.s"),
; and the image builder adds that line to a program that does not (include-once makes a
; second .include of it do nothing).  The ABI constants, then a few library routines.
;
; A program starts at its label `start` in ring 3 with r1 = its argument (the workload's loop
; count for init, or what the parent passed to spawn) and sp = 0x00800000 (one stack page).
; System calls: number in r0, arguments in r1..r3, SYSCALL; the result comes back in r0 and
; every other register is preserved.  The builder also defines PROG_<NAME> = the disk index
; of every program, for spawn.

.include "../abi.s"                 ; SYS_*, HEAP_BASE, DISK_MAGIC ... (the guest ABI)

; lib_puts(r1 = address of a .string) -- write it to the console.  Clobbers r0..r3.
lib_puts:
        mov  r2, r1
        movi r3, 0
lib_puts_len:                       ; r2 walks to the terminating 0
        ld   r0, [r2]
        beq  r0, r3, lib_puts_write
        addi r2, r2, 4
        jmp  lib_puts_len
lib_puts_write:
        sub  r2, r2, r1             ; bytes -> words
        shri r2, r2, 2
        movi r0, SYS_WRITE
        syscall
        ret

; lib_putdec(r1 = unsigned value) -- write it in decimal.  Clobbers r0..r5.
; The digits are pushed least significant first, so on the stack (lowest address first) they
; read most significant first: one write of the stack area prints the number.
lib_putdec:
        movi r2, 0
        movi r4, 0
        movi r5, 10
lib_putdec_split:
        mod  r3, r1, r5
        div  r1, r1, r5
        addi r3, r3, '0'
        push r3
        addi r2, r2, 1
        bne  r1, r4, lib_putdec_split
        mov  r1, sp
        movi r0, SYS_WRITE
        syscall                     ; r2 = number of digits (preserved by the kernel)
        shli r2, r2, 2
        add  sp, sp, r2
        ret

; lib_exit(r1 = status)
lib_exit:
        movi r0, SYS_EXIT
        syscall
