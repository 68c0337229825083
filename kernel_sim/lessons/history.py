"""The history and the kinds of virtualization, as data (notebook 01).

Three tables live here, so that the notebook, its timeline figure, its exercises and the tests all
read the same facts:

* :data:`EVENTS` -- the timeline from IBM's CP-40 to KVM and containers.  Every event carries the
  source it comes from and a ``verified`` flag.  ``verified=True`` means the course's fact sheet
  marks the date as read in the source; ``verified=False`` means the date is approximate or not yet
  checked in a primary source, and everything that shows the event must say so ("about", an open
  marker, "(approx.)").
* :data:`KINDS` -- the kinds of virtualization the seed text lists
  (系统、存储、网络、GPU、软件、硬件),
  each with a short explanation and a concrete example.
* :data:`TERMS` -- the key terms of the seed (VMM 虚拟机监视器 / 虚拟化平台, Guest VM 客户机,
  host 宿主机, the x86 rings ...) with a one-line meaning.

A small live experiment also lives here: :func:`run_two_machines` runs one program on two separate
simulated machines and shows that neither can see the other's memory or console.
"""
from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Categories of the timeline (rows of the figure), oldest idea first
# --------------------------------------------------------------------------------------------
#: Timeline categories, in the order the figure draws its rows (top to bottom).
CATEGORIES: tuple[str, ...] = (
    "mainframe",
    "theory",
    "emulation",
    "full virtualization",
    "paravirtualization",
    "hardware assist",
    "host-KVM",
    "containers",
)

#: Chinese names of the categories, as the seed text words them where it has a word.
CATEGORY_ZH: dict[str, str] = {
    "mainframe": "大型机",
    "theory": "理论与测量",
    "emulation": "纯软件仿真",
    "full virtualization": "全虚拟化（无硬件支持）",
    "paravirtualization": "半虚拟化 / 类虚拟化",
    "hardware assist": "全虚拟化（硬件辅助）",
    "host-KVM": "Host 模型 (KVM)",
    "containers": "容器",
}

# Sources, cited once here and by key in the events (full references for the notebook).
SOURCES: dict[str, str] = {
    "creasy1981": 'R. J. Creasy, "The Origin of the VM/370 Time-Sharing System", '
                  "IBM Journal of Research and Development 25(5), 1981",
    "varian": 'M. Varian, "VM and the VM Community: Past, Present, and Future"',
    "popek1974": 'G. J. Popek and R. P. Goldberg, "Formal Requirements for Virtualizable Third '
                 'Generation Architectures", Communications of the ACM 17(7):412-421, 1974',
    "robin2000": 'J. S. Robin and C. E. Irvine, "Analysis of the Intel Pentium\'s Ability to '
                 'Support a Secure Virtual Machine Monitor", USENIX Security Symposium, 2000',
    "bugnion2012": 'E. Bugnion, S. Devine, M. Rosenblum, J. Sugerman and E. Y. Wang, "Bringing '
                   'Virtualization to the x86 Architecture with the Original VMware '
                   'Workstation", ACM Transactions on Computer Systems 30(4), 2012',
    "bellard2005": 'F. Bellard, "QEMU, a Fast and Portable Dynamic Translator", USENIX Annual '
                   "Technical Conference, FREENIX Track, 2005",
    "barham2003": 'P. Barham et al., "Xen and the Art of Virtualization", ACM SOSP, 2003',
    "adams2006": 'K. Adams and O. Agesen, "A Comparison of Software and Hardware Techniques for '
                 'x86 Virtualization", ASPLOS, 2006',
    "kivity2007": 'A. Kivity, Y. Kamay, D. Laor, U. Lublin and A. Liguori, "kvm: the Linux '
                  'Virtual Machine Monitor", Ottawa Linux Symposium, 2007',
    "linux2620": "Linux 2.6.20 release (4 February 2007), the first to include KVM; A. Kivity et "
                 'al., "kvm: the Linux Virtual Machine Monitor", Ottawa Linux Symposium, 2007',
    "redhat2008": "Red Hat press release on the acquisition of Qumranet, 4 September 2008",
    "bhargava2008": 'R. Bhargava, B. Serebrin, F. Spadini and S. Manne, "Accelerating '
                    'Two-Dimensional Page Walks for Virtualized Systems", ASPLOS, 2008',
    "soltesz2007": 'S. Soltesz, H. Pötzl, M. E. Fiuczynski, A. Bavier and L. Peterson, '
                   '"Container-based Operating System Virtualization: A Scalable, '
                   'High-performance Alternative to Hypervisors", EuroSys, 2007',
    "felter2014": 'W. Felter, A. Ferreira, R. Rajamony and J. Rubio, "An Updated Performance '
                  'Comparison of Virtual Machines and Linux Containers", IBM Research Report '
                  "RC25482, 2014 (ISPASS 2015)",
    "secondary": "secondary sources (project histories, vendor announcements); date not yet "
                 "checked against a primary source",
}


@dataclass(frozen=True)
class Event:
    """One dated event of the timeline.

    ``year`` (and ``month`` where the date is checked to the month) place it on the axis;
    ``date_text`` is how the course prints the date ("about 1964", "2008-2009");
    ``verified`` is False when the fact sheet marks the date [verify] or only approximate.
    """

    key: str
    year: int
    name: str
    short: str
    description: str
    category: str
    source: str
    verified: bool
    month: int | None = None
    day: int | None = None
    date_text: str = ""

    @property
    def when(self) -> float:
        """Position on the time axis, in years (mid-year when the month is unknown)."""
        if self.month is None:
            return self.year + 0.5
        return self.year + (self.month - 1 + ((self.day or 15) - 1) / 31) / 12

    @property
    def date_label(self) -> str:
        """The date as printed, with "about" when it is not verified."""
        if self.date_text:
            text = self.date_text
        elif self.month is not None:
            months = ("January", "February", "March", "April", "May", "June", "July",
                      "August", "September", "October", "November", "December")
            text = f"{months[self.month - 1]} {self.year}"
            if self.day is not None:
                text = f"{self.day} {text}"
        else:
            text = str(self.year)
        if not self.verified and not text.startswith("about"):
            text = f"about {text}"
        return text

    @property
    def citation(self) -> str:
        """The full reference of the event's source."""
        return SOURCES[self.source]


def _e(key, year, name, short, description, category, source, verified, month=None, day=None,
       date_text=""):
    return Event(key, year, name, short, description, category, source, verified, month, day,
                 date_text)


#: The timeline, sorted by date.  Dates follow the course fact sheet; [verify] there means
#: ``verified=False`` here.
EVENTS: tuple[Event, ...] = (
    _e("cp40", 1964, "IBM CP-40", "CP-40",
       "IBM's Cambridge Scientific Center builds CP-40, a 'Control Program' that gives each user "
       "a virtual System/360 on a Model 40 with added relocation hardware.",
       "mainframe", "creasy1981", False, date_text="about 1964"),
    _e("s360_67", 1965, "System/360 Model 67 announced", "360/67 announced",
       "IBM announces the System/360 Model 67, with the address-translation hardware that CP-67 "
       "(CP-40's successor) relies on.",
       "mainframe", "creasy1981", True, month=8),
    _e("cp67", 1967, "CP-67 on delivered 360/67s", "CP-67",
       "The 360/67 is delivered from January 1967; CP-67 runs many virtual machines on it, one "
       "per interactive user.",
       "mainframe", "creasy1981", True, month=1),
    _e("vm370", 1972, "VM/370", "VM/370",
       "CP-67's successor VM/370 becomes an IBM product for the System/370.",
       "mainframe", "creasy1981", False),
    _e("popek_goldberg", 1974, "Popek & Goldberg's formal requirements", "Popek & Goldberg",
       "Popek and Goldberg define a virtual machine monitor (equivalence, resource control, "
       "efficiency) and prove when trap-and-emulate works: sensitive instructions must be "
       "privileged.",
       "theory", "popek1974", True),
    _e("bochs", 1994, "Bochs", "Bochs",
       "Bochs, an x86 PC emulator that interprets every guest instruction in software.",
       "emulation", "secondary", False),
    _e("vmware", 1999, "VMware Workstation", "VMware Workstation",
       "VMware Workstation virtualizes unmodified x86 operating systems on a hosted OS, "
       "combining direct execution with binary translation of kernel code.",
       "full virtualization", "bugnion2012", True),
    _e("robin_irvine", 2000, "Robin & Irvine analyse the Pentium", "Robin & Irvine",
       "Robin and Irvine count about 17 sensitive but unprivileged Pentium instructions "
       "(e.g. POPF, SGDT): x86 fails Popek & Goldberg's condition.",
       "theory", "robin2000", True),
    _e("jails", 2000, "FreeBSD jails", "FreeBSD jails",
       "FreeBSD jails partition one operating system kernel into isolated environments: "
       "OS-level virtualization, no hypervisor.",
       "containers", "secondary", False),
    _e("xen", 2003, "Xen paper", "Xen",
       "Xen (SOSP 2003) paravirtualizes x86: guest kernels are modified to call the hypervisor "
       "(hypercalls) instead of executing privileged instructions.",
       "paravirtualization", "barham2003", True),
    _e("qemu", 2005, "QEMU paper", "QEMU",
       "Bellard describes QEMU, an emulator that translates guest code dynamically into host "
       "code, a few times slower than native on integer code.",
       "emulation", "bellard2005", True),
    _e("vtx", 2005, "Intel VT-x (Vanderpool)", "VT-x",
       "Intel's first processors with VT-x: a VMX root / non-root mode so unmodified guest "
       "kernels can run in ring 0 while the VMM keeps control.",
       "hardware assist", "secondary", False),
    _e("amdv", 2006, "AMD-V (Pacifica)", "AMD-V",
       "AMD's counterpart to VT-x (codename Pacifica): a guest mode and exits to the VMM.",
       "hardware assist", "secondary", False),
    _e("adams_agesen", 2006, "Adams & Agesen: software vs hardware VMMs",
       "Adams & Agesen",
       "The first hardware-assisted VMMs often ran slower than VMware's binary translator: "
       "the first hardware generation did not virtualize the MMU.",
       "theory", "adams2006", True),
    _e("kvm", 2007, "KVM merged into Linux 2.6.20", "KVM in Linux",
       "KVM (Kernel-based Virtual Machine) ships with Linux 2.6.20: the Linux kernel itself "
       "becomes the core of a hardware-assisted VMM, with QEMU as its device model.",
       "host-KVM", "linux2620", True, month=2, day=4),
    _e("soltesz", 2007, "Container-based OS virtualization (EuroSys)", "Soltesz et al.",
       "Soltesz et al. compare container-based OS virtualization with hypervisors.",
       "containers", "soltesz2007", True),
    _e("bhargava", 2008, "Two-dimensional page walks (ASPLOS)", "Bhargava et al.",
       "Bhargava et al. analyse nested paging: a TLB miss walks guest and host page tables, "
       "24 memory references for 4 levels over 4, against 4 natively.",
       "theory", "bhargava2008", True),
    _e("rvi", 2008, "AMD RVI nested paging (Barcelona)", "RVI",
       "AMD's Barcelona processors add nested paging (RVI): the hardware walks guest and host "
       "page tables, no shadow page tables needed.",
       "hardware assist", "secondary", False),
    _e("lxc", 2008, "LXC", "LXC",
       "LXC (Linux Containers) combines Linux namespaces and cgroups into containers.",
       "containers", "secondary", False),
    _e("qumranet", 2008, "Red Hat acquires Qumranet", "Red Hat buys Qumranet",
       "Red Hat buys Qumranet, the company that developed KVM (about US$107M). KVM itself is "
       "GPL code in the Linux kernel and was not 'acquired'.",
       "host-KVM", "redhat2008", True, month=9, day=4),
    _e("ept", 2009, "Intel EPT nested paging (Nehalem)", "EPT",
       "Intel's Nehalem processors add Extended Page Tables (EPT), Intel's nested paging.",
       "hardware assist", "secondary", False, date_text="about 2008-2009"),
    _e("docker", 2013, "Docker", "Docker",
       "Docker popularizes container images: an application packaged with its files, run as "
       "an isolated process on a shared kernel.",
       "containers", "secondary", False),
    _e("felter", 2014, "Felter et al.: VMs vs containers", "Felter et al.",
       "IBM researchers measure KVM virtual machines against Linux containers: containers "
       "equal or better almost everywhere; both need tuning for I/O-heavy work.",
       "containers", "felter2014", True),
)


def events_by_category(category: str) -> tuple[Event, ...]:
    """The events of one category, in date order (raises ValueError for an unknown category)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    return tuple(e for e in EVENTS if e.category == category)


def event(key: str) -> Event:
    """Look an event up by its key (e.g. ``"kvm"``)."""
    for e in EVENTS:
        if e.key == key:
            return e
    raise KeyError(f"no event {key!r}; known: {', '.join(e.key for e in EVENTS)}")


def timeline_rows():
    """The timeline as plain dicts (one per event), e.g. for ``pandas.DataFrame``."""
    return [dict(date=e.date_label, event=e.name, category=e.category, verified=e.verified,
                 description=e.description, source=e.citation) for e in EVENTS]


# --------------------------------------------------------------------------------------------
# Kinds of virtualization (the seed's 分类: 系统、存储、网络、GPU、软件、硬件)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One kind of virtualization the seed lists."""

    key: str
    english: str
    chinese: str
    explanation: str
    example: str


KINDS: tuple[Kind, ...] = (
    Kind("system", "system virtualization", "系统虚拟化",
         "A whole computer -- CPU, memory and devices -- is virtualized, so several operating "
         "systems run side by side on one physical machine, each in its own virtual machine "
         "(虚拟机). A virtual machine monitor decides what each guest really gets. This is the "
         "kind the rest of the course simulates.",
         "KVM with QEMU running a Windows guest and a Linux guest on one Linux server."),
    Kind("storage", "storage virtualization", "存储虚拟化",
         "Physical disks are pooled and carved into logical disks whose size and placement no "
         "longer follow the hardware: a logical disk can span several physical disks, or many "
         "logical disks can share one.",
         "Linux LVM combining two physical disks into one volume group and cutting logical "
         "volumes from it; a VM's disk stored as one image file (e.g. QEMU's qcow2) on the host."),
    Kind("network", "network virtualization", "网络虚拟化",
         "Logical networks are built on top of the physical one: several isolated networks share "
         "the same cables and switches, and virtual machines get virtual network cards joined by "
         "software switches.",
         "IEEE 802.1Q VLANs splitting one physical switch into separate networks; a Linux bridge "
         "connecting the virtual NICs of several VMs."),
    Kind("gpu", "GPU virtualization", "GPU虚拟化",
         "A graphics processor is shared among virtual machines (time-sliced or partitioned), "
         "or handed whole to one VM (passthrough), so guests can use GPU acceleration.",
         "Passing a whole GPU to one VM with Linux VFIO; a vendor's virtual-GPU product that "
         "splits one data-centre GPU among several VMs."),
    Kind("software", "software virtualization", "软件虚拟化",
         "Virtualization done by software alone, without help from the processor: interpreting "
         "or translating every guest instruction (emulation), or binary translation of the "
         "guest kernel. (Some authors use the term for application virtualization instead: one "
         "program runs in a sandboxed view of files and settings.)",
         "Bochs interpreting an x86 PC; QEMU translating ARM code to run on an x86 host; "
         "VMware Workstation's binary translator on pre-VT-x processors."),
    Kind("hardware", "hardware(-assisted) virtualization", "硬件虚拟化",
         "The processor itself helps the VMM: a new mode for guests (Intel's VMX non-root "
         "operation, AMD-V's guest mode), exits to the VMM on chosen events, and nested page "
         "tables. (In English, 'hardware virtualization' often also means virtualizing the "
         "hardware platform, i.e. system virtualization: the words overlap.)",
         "Intel VT-x and AMD-V, which KVM requires and Xen uses for its HVM guests."),
)


def kind(key_or_name: str) -> Kind:
    """Look a kind up by key, English name or Chinese name."""
    text = str(key_or_name).strip().lower()
    for k in KINDS:
        if text in (k.key, k.english.lower(), k.chinese.lower()):
            return k
    raise KeyError(f"no kind {key_or_name!r}; known: {', '.join(k.key for k in KINDS)}")


def kinds_rows():
    """The kinds as plain dicts, for a table."""
    return [dict(kind=k.english, chinese=k.chinese, explanation=k.explanation, example=k.example)
            for k in KINDS]


def kinds_html() -> str:
    """The kinds as an HTML table (for ``IPython.display.HTML``)."""
    return _table_html(("kind", "中文", "what it is", "example"),
                       [(k.english, k.chinese, k.explanation, k.example) for k in KINDS])


# --------------------------------------------------------------------------------------------
# Key terms (the seed's 关键字及扩展知识, and the words of its later sections)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    english: str
    chinese: str
    meaning: str


TERMS: tuple[Term, ...] = (
    Term("virtualization", "虚拟化",
         "presenting physical resources (CPU, memory, disks, network) as abstract ones that can "
         "be split or combined"),
    Term("virtual machine (VM)", "虚拟机",
         "a complete computer made of software that an operating system can run on"),
    Term("virtual machine monitor (VMM), hypervisor", "虚拟机监视器 / 虚拟化平台",
         "the software that creates virtual machines and keeps control of the real hardware"),
    Term("guest (guest VM, guest OS)", "客户机",
         "a virtual machine, or the operating system running inside it"),
    Term("host (host OS)", "宿主机",
         "the physical machine, or the operating system that owns it and runs the VMM "
         "(host model)"),
    Term("protection rings (x86)", "X86保护环",
         "privilege levels 0-3 of the x86 CPU: ring 0 for the kernel, ring 3 for applications"),
    Term("Control Program (CP)", "控制程序",
         "IBM's 1960s name for its VMM (CP-40, CP-67); 'VMM' is the later, general term"),
    Term("pure software emulation", "纯软件仿真",
         "every guest instruction is interpreted or translated in software (Bochs, QEMU)"),
    Term("full virtualization", "全虚拟化",
         "an unmodified guest OS runs, unaware that it is virtualized"),
    Term("paravirtualization", "半虚拟化 / 类虚拟化",
         "the guest OS is modified to cooperate with the VMM through hypercalls"),
    Term("hardware-assisted virtualization", "硬件辅助虚拟化",
         "the CPU provides a guest mode and VM exits (Intel VT-x, AMD-V)"),
    Term("container", "容器",
         "an isolated group of processes sharing the host's kernel; no VMM"),
    Term("type 1 / type 2 hypervisor", "type-1（裸机）/ type-2（基于OS）",
         "runs on bare metal / runs on top of a host OS"),
)


def terms_rows():
    return [dict(english=t.english, chinese=t.chinese, meaning=t.meaning) for t in TERMS]


def terms_html() -> str:
    """The key terms as an HTML table."""
    return _table_html(("term", "中文", "meaning"),
                       [(t.english, t.chinese, t.meaning) for t in TERMS])


def _table_html(header, rows) -> str:
    import html
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------------------------
# A first live experiment: two machines, one program
# --------------------------------------------------------------------------------------------
#: The program both machines run.  ``NAME`` is a constant given at assembly time, so the two
#: copies differ only in the letter they store.  Each copy writes its letter into the memory cell
#: ``cell`` and then prints what that cell holds, three times.
TWO_MACHINES_SOURCE = """\
; write my NAME into a memory cell, then print the cell three times
start:  movi r1, NAME        ; r1 = my letter (a constant chosen at assembly time)
        li   r2, cell        ; r2 = address of the cell
        st   r1, [r2]        ; memory[cell] = my letter
        movi r3, 3           ; loop counter
loop:   ld   r4, [r2]        ; read the cell back: whose letter is there?
        out  console, r4     ; print it
        dec  r3
        bne  r3, r0, loop
        movi r4, '\\n'
        out  console, r4
        hlt
cell:   .word 0
"""


def run_two_machines(names: str = "AB", memory_size: int = 64 << 10):
    """Run :data:`TWO_MACHINES_SOURCE` on one separate :class:`~kernel_sim.machine.Machine` per
    letter in ``names`` and return a list of dicts (name, cell address, cell value, console,
    stop reason, instructions).

    Every machine stores its letter at the *same* physical address, yet each reads back only its
    own: each Machine owns its own memory array and console buffer.  That isolation is a property
    of how the simulator is built (separate NumPy arrays), not yet a mechanism a VMM enforces on
    shared hardware -- the later notebooks build those mechanisms.
    """
    from ..asm import assemble
    from ..machine import Machine

    if not names or not all(isinstance(c, str) and len(c) == 1 and 32 < ord(c) < 127
                            for c in names):
        raise ValueError(f"names must be printable ASCII letters, one per machine, got {names!r}")
    out = []
    for letter in names:
        program = assemble(TWO_MACHINES_SOURCE, filename="two_machines.s",
                           defines={"NAME": ord(letter)})
        machine = Machine(memory_size=memory_size)
        machine.load(program)
        result = machine.run(count=10_000)
        cell = program.symbols["cell"]
        out.append(dict(machine=f"machine {letter}", cell_address=f"0x{cell:x}",
                        cell_value=chr(machine.read_word(cell)), console=result.console,
                        stop=result.stop, instructions=result.instructions))
    return out


def two_machines_html(results) -> str:
    """The rows of :func:`run_two_machines` as an HTML table."""
    header = ("machine", "cell address", "value in the cell", "console", "stop", "instructions")
    rows = [(r["machine"], r["cell_address"], repr(r["cell_value"]), repr(r["console"]),
             r["stop"], r["instructions"]) for r in results]
    return _table_html(header, rows)


__all__ = ["CATEGORIES", "CATEGORY_ZH", "SOURCES", "Event", "EVENTS", "events_by_category",
           "event", "timeline_rows", "Kind", "KINDS", "kind", "kinds_rows", "kinds_html", "Term",
           "TERMS", "terms_rows", "terms_html", "TWO_MACHINES_SOURCE", "run_two_machines",
           "two_machines_html"]
