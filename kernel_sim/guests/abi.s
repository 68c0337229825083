; abi.s -- the guest ABI for assembly programs (the kernel and user programs).
; generated from kernel_sim/abi.py by `python -m kernel_sim.tools.generate`:
; DO NOT EDIT.  Change kernel_sim/abi.py and run the generator again.
;
; Offsets into the boot information page (BI_*), the shared info page (SI_*) and
; the disk directory (DIR_*, DE_*) are BYTE offsets here: 4 x the word index that
; kernel_sim/abi.py defines.

; ---- memory layout
KERNEL_BASE       = 0x1000     ; where the kernel is loaded; entry label `boot`
USER_BASE         = 0x00400000 ; origin of every user program (code and data)
USER_STACK_TOP    = 0x00800000 ; a process starts with sp here (one stack page below)
HEAP_BASE         = 0x10000000 ; the demand-paged heap: map/unmap and page faults work here
HEAP_END          = 0x10400000 ; end of the heap (one page table's worth: 4 MiB)
MONITOR_BASE      = 0xFF000000 ; virtual addresses from here up belong to monitors
MAX_PROG_WORDS    = 16384      ; largest program image the kernel loads (64 KiB)
EXIT_FAULT        = 128        ; a process killed by trap vector V exits with EXIT_FAULT + V

; ---- magic numbers
BOOT_MAGIC        = 0x4B53494D ; 'KSIM' in boot information word BI_MAGIC
DISK_MAGIC        = 0x4B53444B ; 'KSDK' in word DIR_MAGIC of the disk directory
DONE_MAGIC        = 0x454E4F44 ; 'DONE': the kernel writes it to BI_DONE at shutdown

; ---- boot information page at physical address 0 (byte offsets)
BI_MAGIC          = 0x00       ; word 0: BOOT_MAGIC
BI_INIT           = 4          ; word 1: disk index of the program to run as init
BI_COUNT          = 8          ; word 2: the loop count: init's argument (r1 when it starts)
BI_RAM            = 12         ; word 3: RAM size in bytes
BI_MOFF           = 16         ; word 4: PARAVIRT: machine address of guest-physical 0 (a monitor
                               ; writes it)
BI_SHINFO         = 20         ; word 5: PARAVIRT: guest-physical address of the shared info page
BI_NPROG          = 24         ; word 6: number of programs on disk
BI_BATCH          = 28         ; word 7: PARAVIRT: page-table updates per mmu_update hypercall
BI_DONE           = 64         ; word 16: written at shutdown: DONE_MAGIC
BI_INIT_STATUS    = 68         ; word 17: written at shutdown: init's exit status
BI_NPROCS         = 72         ; word 18: written at shutdown: processes created
BI_KILLS          = 76         ; word 19: written at shutdown: processes killed by a fault

; ---- disk
SECTOR_WORDS      = 128        ; words per sector
SECTOR_BYTES      = 512        ; bytes per sector
DIR_ENTRY_WORDS   = 4          ; words per directory entry
DIR_MAX           = 31         ; most entries the directory sector holds

; ---- disk directory, sector 0 (byte offsets)
DIR_MAGIC         = 0x00       ; word 0: DISK_MAGIC
DIR_COUNT         = 4          ; word 1: number of programs
DIR_SECTORS       = 8          ; word 2: size of the disk in sectors
DIR_ENTRIES       = 16         ; word 4: the first entry; one DIR_ENTRY_WORDS-word entry per program
DE_SECTOR         = 0          ; word 0: entry: first sector of the program (each starts on a sector)
DE_WORDS          = 4          ; word 1: entry: length in words
DE_ENTRY          = 8          ; word 2: entry: entry address (virtual)
DE_NAME           = 12         ; word 3: entry: the first four characters of its name, low byte first

; ---- system calls: SYSCALL with the number in r0
SYS_EXIT          = 0          ; r1 = exit status; never returns
SYS_WRITE         = 1          ; r1 = address, r2 = length in words: print one character per word
SYS_GETPID        = 2          ; returns the process id
SYS_YIELD         = 3          ; give the CPU to the next runnable process
SYS_MAP           = 4          ; r1 = virtual address: map a fresh zeroed user page there
SYS_UNMAP         = 5          ; r1 = virtual address: remove the mapping
SYS_FORK          = 6          ; copy the address space; returns 0 in the child, the child's pid in
                               ; the parent
SYS_WAIT          = 7          ; wait for a child to exit; returns its exit status (child pid in r1)
SYS_SPAWN         = 8          ; r1 = program index on disk, r2 = argument: start it as a new process
SYS_KCALL         = 9          ; r1 = n: the kernel makes n call/return pairs (a kernel-mode
                               ; workload)
SYS_BLKREAD       = 10         ; r1 = sector: read it through the block driver; returns its first
                               ; word
SYS_SLEEP         = 11         ; r1 = ticks: sleep at least that long

; ---- hypercalls of the PARAVIRT build: vmcall N
HC_CONSOLE_WRITE  = 0          ; r1 = character
HC_SET_TRAP_TABLE = 1          ; r1 = virtual address of the 256-entry vector table
HC_STACK_SWITCH   = 2          ; r1 = kernel stack pointer for traps from user mode
HC_MMU_UPDATE     = 3          ; r1 = virtual address of (PTE machine address, new value) pairs, r2 =
                               ; number of pairs; returns the number applied
HC_NEW_BASEPTR    = 4          ; r1 = machine address of the root table | ASID
HC_INVLPG         = 5          ; r1 = va
HC_TLB_FLUSH      = 6          ; -
HC_IRET           = 7          ; the frame at sp, as IRET
HC_SYSRET         = 8          ; as SYSRET
HC_SET_TIMER      = 9          ; r1 = period
HC_GET_TICKS      = 10         ; returns the tick counter
HC_BLOCK_IO       = 11         ; r1 = command (BLK_READ, BLK_WRITE), r2 = sector, r3 = machine
                               ; address of the buffer; returns the status
HC_BLOCK          = 12         ; sleep until the next event
HC_EVENT_CHECK    = 13         ; deliver a pending event now
HC_ENABLE_PAGING  = 14         ; -
HC_SHUTDOWN       = 15         ; r1 = status

; ---- shared info page of the PARAVIRT build (byte offsets)
SI_MASK           = 0          ; word 0: evtchn_upcall_mask: 1 = virtual interrupts masked (CLI is a
                               ; store of 1, STI a store of 0 then event_check if SI_PENDING is set)
SI_PENDING        = 4          ; word 1: evtchn_upcall_pending: an event arrived while masked
SI_CR2            = 8          ; word 2: fault address of the last page fault (the monitor writes it
                               ; before delivering #PF; natively RDCR fault_addr)

; ---- PARAVIRT page-table update batches
DEFAULT_BATCH     = 8          ; mmu_update batch size when BI_BATCH is 0
MAX_BATCH         = 64         ; the PV kernel's PTE update queue holds at most this many

; ---- I/O ports (IN / OUT also accept the lowercase names)
PORT_CONSOLE      = 0x10       ; OUT: append the low byte to the console; IN: reads 0
PORT_TIMER        = 0x20       ; OUT: timer period in ticks (0 = off), next deadline = now + period;
                               ; IN: the period
PORT_TICKS        = 0x21       ; IN: low 32 bits of the tick counter (retired instructions + idle
                               ; ticks)
PORT_BLK_SECTOR   = 0x30       ; block device: OUT sets the sector number (512-byte sectors); IN
                               ; reads it back
PORT_BLK_BUFFER   = 0x31       ; block device: OUT sets the physical address of the 512-byte buffer;
                               ; IN reads it
PORT_BLK_COMMAND  = 0x32       ; block device: OUT a command (below), synchronous DMA; IN: the status
                               ; of the last one (below)
PORT_BLK_SIZE     = 0x33       ; block device: IN reads the number of sectors

; ---- block device commands (OUT blk_command)
BLK_READ          = 1          ; copy the sector into memory at the buffer
BLK_WRITE         = 2          ; copy the buffer to the sector

; ---- block device status (IN blk_command)
BLK_OK            = 0          ; ok
BLK_BAD_ADDRESS   = 1          ; bad sector or buffer: nothing copied
BLK_BAD_COMMAND   = 2          ; bad command
