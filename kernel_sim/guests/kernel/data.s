; kernel/data.s -- data: kernel variables, statistics, messages, the vector table, the process table,
;   kernel page tables and stack
; Part 12 of the guest kernel, included in order by guests/kernel.s (the overview is there).
; ============================================================================================
; 12. Data
; ============================================================================================
current:            .word -1        ; slot of the running process, -1 if none
need_resched:       .word 0
jiffies:            .word 0         ; timer interrupts since boot
next_pid:           .word 1
nfree:              .word 0
ram_size:           .word 0
nprog:              .word 0
disk_sectors:       .word 0
init_status:        .word 0
moff:               .word 0         ; PARAVIRT: machine offset
shinfo:             .word 0         ; PARAVIRT: shared info page
batch:              .word DEFAULT_BATCH ; PARAVIRT: PTE updates per mmu_update
pte_qlen:           .word 0
; statistics (tests and notebooks read them through the kernel's symbol table)
stat_syscalls:      .word 0
stat_switches:      .word 0
stat_demand_faults: .word 0
stat_divzero:       .word 0
stat_forks:         .word 0
stat_exits:         .word 0
stat_kills:         .word 0
stat_idle:          .word 0
; page-directory slots that hold user page tables: the image and stack (0x00400000-0x007FFFFF)
; and the heap (0x10000000-0x103FFFFF); 0 ends the list (slot 0 is the kernel's)
user_pdes:          .word USER_BASE >> 22, HEAP_BASE >> 22, 0

msg_boot:           .string "[kernel] boot: "
msg_boot_ram:       .string " KiB RAM, "
msg_boot_progs:     .string " programs, timer period "
msg_halt:           .string "[kernel] halt: init exit status "
msg_pid:            .string "[kernel] pid "
msg_killed:         .string " killed: "
msg_at:             .string " at "
msg_in_kernel:      .string " in the kernel at pc "
msg_panic:          .string "[kernel] panic: "
msg_de:             .string "divide error"
msg_ud:             .string "invalid opcode"
msg_gp:             .string "general protection fault"
msg_pf:             .string "page fault"
msg_oom:            .string "out of memory"
msg_unexpected:     .string "unexpected trap"
msg_kernel_syscall: .string "system call"
msg_bad_info:       .string "bad boot information"
msg_bad_disk:       .string "no program directory on the disk"
msg_no_init:        .string "cannot start init"
msg_deadlock:       .string "every process is waiting"
msg_mmu_refused:    .string "mmu_update refused"
msg_hypercall:      .string "hypercall failed"

.align 16
vector_table:       .space NUM_VECTORS * 4
proc_table:         .space NPROC * PCB_SIZE
free_list:          .space MAX_FRAMES * 4
dir_buf:            .space SECTOR_BYTES   ; the disk directory (sector 0), kept after boot
blk_buf:            .space SECTOR_BYTES   ; blkread's buffer
pte_queue:          .space MAX_BATCH * 8

.align PAGE_SIZE
kernel_pd:          .space PAGE_SIZE      ; the kernel's page directory (boot, idle, exit)
kernel_pt:          .space PAGE_SIZE      ; identity map of RAM, shared by every address space
shared_info_page:   .space PAGE_SIZE      ; reserved in both builds: the PV shared info page
kstack:             .space 2 * PAGE_SIZE  ; the kernel stack
kstack_top:
kernel_end:
USER_REGS = kstack_top - PT_SIZE          ; pt_regs of a trap from user mode
