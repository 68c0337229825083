; kernel/drivers.s -- drivers: console (kputc, kputs, kputdec, kputhex) and block device (blk_io)
; Part 10 of the guest kernel, included in order by guests/kernel.s (the overview is there).
; ============================================================================================
; 10. Drivers
; ============================================================================================

; kputc(r1 = character) -- the console driver (clobbers r0 only)
kputc:
.if PARAVIRT
        vmcall HC_CONSOLE_WRITE
.else
        out  console, r1
.endif
        ret

; blk_io(r1 = command, r2 = sector, r3 = physical buffer address) -> r0 = status (0 = ok).
; The block driver.  Natively: program the device's three registers, then read the status;
; the sequence is a critical section (an interrupt handler using the device between two
; OUTs would corrupt the request).
blk_io:
.if PARAVIRT
        to_mach r3, r4
        vmcall HC_BLOCK_IO
.else
        irq_save
        out  blk_sector, r2
        out  blk_buffer, r3
        out  blk_command, r1        ; the transfer happens here (synchronous DMA)
        in   r0, blk_command
        irq_restore
.endif
        ret

; kputs(r1 = address of a .string: one character per word, 0-terminated)
kputs:
        push r8
        mov  r8, r1
kputs_loop:
        ld   r1, [r8]
        beq  r1, r14, kputs_done
        call kputc
        addi r8, r8, 4
        jmp  kputs_loop
kputs_done:
        pop  r8
        ret

; kputdec(r1 = signed value) -- print in decimal
kputdec:
        push r8
        push r9
        mov  r8, r1
        bge  r8, r14, kputdec_pos
        movi r1, '-'
        call kputc
        sub  r8, r14, r8
kputdec_pos:
        movi r9, 0
kputdec_split:                      ; push the digits, least significant first
        movi r2, 10
        mod  r1, r8, r2
        div  r8, r8, r2
        push r1
        addi r9, r9, 1
        bne  r8, r14, kputdec_split
kputdec_print:
        pop  r1
        addi r1, r1, '0'
        call kputc
        addi r9, r9, -1
        bne  r9, r14, kputdec_print
        pop  r9
        pop  r8
        ret

; kputhex(r1 = value) -- print as 0x followed by 8 hex digits
kputhex:
        push r8
        push r9
        mov  r8, r1
        movi r1, '0'
        call kputc
        movi r1, 'x'
        call kputc
        movi r9, 28
kputhex_loop:
        shr  r1, r8, r9
        andi r1, r1, 15
        movi r2, 10
        blt  r1, r2, kputhex_digit
        addi r1, r1, 'a' - 10 - '0'
kputhex_digit:
        addi r1, r1, '0'
        call kputc
        addi r9, r9, -4
        bge  r9, r14, kputhex_loop
        pop  r9
        pop  r8
        ret
