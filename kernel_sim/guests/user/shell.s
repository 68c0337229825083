; shell.s -- init for the `boot` workload: prints a banner, then runs a few programs one after
; another the way a shell script would (spawn, wait, report the exit status), and exits.
.include "../abi.s"                 ; the guest ABI: SYS_*, HEAP_BASE, ...
start:                              ; r1 = the boot count: the argument for compute
        mov  r13, r1
        la   r1, banner
        call lib_puts
        la   r1, version
        call lib_puts
        la   r8, commands
next:
        ld   r9, [r8]               ; program index; -1 ends the list
        movi r1, -1
        beq  r9, r1, finished
        ld   r10, [r8 + 4]          ; argument; -1 means the boot count
        bne  r10, r1, have_arg
        mov  r10, r13
have_arg:
        la   r1, prompt             ; "$ name [arg]"
        call lib_puts
        ld   r1, [r8 + 8]
        call lib_puts
        movi r4, 0
        beq  r10, r4, no_arg
        la   r1, space
        call lib_puts
        mov  r1, r10
        call lib_putdec
no_arg:
        la   r1, newline
        call lib_puts
        movi r0, SYS_SPAWN
        mov  r1, r9
        mov  r2, r10
        syscall
        movi r4, 0
        blt  r0, r4, spawn_failed
        mov  r11, r0                ; pid
        movi r0, SYS_WAIT
        syscall
        mov  r12, r0                ; exit status
        la   r1, report_pid         ; "[pid N] exit S"
        call lib_puts
        mov  r1, r11
        call lib_putdec
        la   r1, report_exit
        call lib_puts
        mov  r1, r12
        call lib_putdec
        la   r1, newline
        call lib_puts
        jmp  advance
spawn_failed:
        la   r1, cannot
        call lib_puts
advance:
        addi r8, r8, 12
        jmp  next
finished:
        la   r1, bye
        call lib_puts
        movi r1, 0
        jmp  lib_exit

commands:                           ; program, argument, name
        .word PROG_HELLO, 0, name_hello
        .word PROG_COMPUTE, -1, name_compute
        .word PROG_GETPID, 0, name_getpid
        .word PROG_SLEEP, 2, name_sleep
        .word -1

banner:       .string "kernel_sim guest OS\n"
version:      .string "version 1.0: 12 system calls, 2-level paging, round-robin scheduler\n"
prompt:       .string "$ "
space:        .string " "
newline:      .string "\n"
report_pid:   .string "[pid "
report_exit:  .string "] exit "
cannot:       .string "shell: cannot start it\n"
bye:          .string "shell: bye\n"
name_hello:   .string "hello"
name_compute: .string "compute"
name_getpid:  .string "getpid"
name_sleep:   .string "sleep"

.include "_lib.s"                   ; lib_puts, lib_putdec, lib_exit
