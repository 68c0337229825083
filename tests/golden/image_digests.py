"""sha256 digests of every guest image the builder makes, to prove a refactoring of the guest
sources changed no byte (see tests/test_image_digests.py).

The digests in ``image_digests.json`` were recorded from commit 7dfcbf4 ("Layout by floors"),
the last commit before kernel.s was split into files and its ABI constants were generated from
kernel_sim/abi.py.  A change that *means* to change the guest (a new system call, a kernel fix)
records them again::

    python tests/golden/image_digests.py --write

and says so in its commit message.  An image's digest covers its whole initial RAM (boot
information page and kernel), its disk (directory and every user program) and its entry point.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

DIGEST_FILE = Path(__file__).with_name("image_digests.json")

#: The user program of the custom-guest case (exercises the ``PROG_*`` defines and _lib.s).
CUSTOM_SOURCE = """\
start:  movi r0, SYS_SPAWN
        movi r1, PROG_HELLO
        movi r2, 0
        syscall
        movi r0, SYS_WAIT
        syscall
        li   r1, HEAP_BASE
        jmp  lib_exit
"""


def _digest(image) -> str:
    h = hashlib.sha256()
    h.update(image.ram.astype("<u4").tobytes())
    h.update(image.disk.astype("<u4").tobytes())
    h.update(image.entry.to_bytes(4, "little"))
    return h.hexdigest()


def image_digests() -> dict[str, str]:
    """``"workload/plain|pv/count=N/batch=B"`` -> sha256 of the image, for every build:
    each workload at its default count and at count 7, plain and PARAVIRT, the PARAVIRT ones
    at batch sizes 1, 8 (the default) and 64, and one custom guest in both builds."""
    from kernel_sim.guest import WORKLOADS, build_custom_guest, build_guest

    out = {}
    for name, spec in WORKLOADS.items():
        for count in (spec.default_count, 7):
            out[f"{name}/plain/count={count}"] = _digest(build_guest(name, count))
            for batch in (1, 8, 64):
                image = build_guest(name, count, paravirt=True, batch=batch)
                out[f"{name}/pv/count={count}/batch={batch}"] = _digest(image)
    for paravirt in (False, True):
        image = build_custom_guest(CUSTOM_SOURCE, count=3, paravirt=paravirt)
        out[f"custom/{'pv' if paravirt else 'plain'}/count=3"] = _digest(image)
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/golden/image_digests.py --write")
    DIGEST_FILE.write_text(json.dumps(image_digests(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGEST_FILE}")
