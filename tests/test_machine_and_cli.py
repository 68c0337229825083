"""Settings are validated with clear messages; the CLI prints reports, JSON and clean errors."""
import json
import os
import subprocess
import sys

import pytest

from kernel_sim import Machine, isa
from kernel_sim.runner import run_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("kwargs, words", [
    (dict(memory_size=1 << 40), "memory_size must be between"),
    (dict(memory_size=5000), "multiple of 4096"),
    (dict(paging_levels=5), "paging_levels must be between 1 and 4"),
    (dict(tlb_size=48), "power of two"),
    (dict(ring=4), "ring must be between 0 and 3"),
    (dict(ring="3"), "ring must be an integer"),
    (dict(costs={"walk_ref": -1}), "non-negative"),
    (dict(costs={"walkref": 1}), "unknown cost"),
])
def test_bad_machine_setting_is_refused_with_message(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        Machine(**kwargs)


def test_run_refuses_negative_budget():
    with pytest.raises(ValueError, match="count"):
        Machine().run(count=-1)


def test_load_refuses_program_that_does_not_fit():
    from kernel_sim.asm import assemble
    with pytest.raises(ValueError, match="does not fit"):
        Machine(memory_size=4096).load(assemble(".org 0x2000\n nop\n"))


def test_default_machine_stays_small_for_binder():
    m = Machine()
    total = sum(a.nbytes for a in (m.regs, m.ctrl, m.mem, m.tlb, m.counters, m.console_buffer,
                                   m.trace))
    assert total < 16 << 20


def test_state_digest_ignores_tlb_and_counters_but_not_memory():
    a = run_source("start: movi r1, 1\n hlt\n")
    m = Machine()
    from kernel_sim.asm import assemble
    m.load(assemble("start: movi r1, 1\n hlt\n"))
    m.tlb[:] = 99          # not guest-visible
    m.counters[5] = 1234
    b = m.run()
    assert a.state_digest == b.state_digest
    m.write_word(0x1000, 7)
    assert m.run().state_digest != a.state_digest


def _digests(ring, r5):
    from kernel_sim.runner import build_machine
    m = build_machine("start: nop\n .word 0\n", ring=ring)
    m.regs[5] = r5                   # a register the program never touches
    r = m.run()
    return r.state_digest, r.user_digest


def test_user_digest_sees_registers_only_when_stopped_in_ring3():
    s0, u0 = _digests(0, 1)
    s0b, u0b = _digests(0, 2)
    assert s0 != s0b and u0 == u0b        # ring 0 stop: registers belong to the kernel
    s3, u3 = _digests(3, 1)
    s3b, u3b = _digests(3, 2)
    assert s3 != s3b and u3 != u3b        # ring 3 stop: registers are the user program's


def test_cost_override_changes_cycles_predictably():
    src = "start: movi r1, 1\n movi r2, 0\n div r3, r1, r1\n hlt\n"
    base = run_source(src)
    dearer = run_source(src, costs={"DIV": isa.BY_MNEMONIC["DIV"].cycles + 10})
    assert dearer.cycles - base.cycles == 10


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "kernel_sim", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_cli_run_prints_report(tmp_path):
    f = tmp_path / "hello.s"
    f.write_text("start: movi r1, 'H'\n out console, r1\n hlt\n")
    out = cli("run", str(f))
    assert out.returncode == 0 and "stopped: halt" in out.stdout and "| H" in out.stdout


def test_cli_run_json_has_required_keys(tmp_path):
    f = tmp_path / "p.s"
    f.write_text("start: cli\n hlt\n")
    out = cli("run", str(f), "--ring", "3", "--paging-levels", "3", "--json")
    data = json.loads(out.stdout)
    for key in ("instructions", "cycles", "events", "console", "state_digest", "user_digest"):
        assert key in data
    assert data["stop"] == "unhandled_trap" and data["stop_vector"] == isa.VEC_GP


def test_cli_malformed_file_prints_location_and_exits_2(tmp_path):
    f = tmp_path / "bad.s"
    f.write_text("start: movi r1, 1\n  ad r1, r2, r3\n")
    out = cli("run", str(f))
    assert out.returncode == 2                  # bad input (kernel_sim.tools.status)
    assert out.stderr.strip() == f"{f}:2:3: unknown instruction 'ad'; did you mean 'add'?"
    assert "Traceback" not in out.stderr + out.stdout


def test_cli_missing_file_is_clean_error(tmp_path):
    out = cli("run", str(tmp_path / "nope.s"))
    assert out.returncode == 2 and "cannot read" in out.stderr and "Traceback" not in out.stderr


def test_cli_bad_setting_is_clean_error(tmp_path):
    f = tmp_path / "p.s"
    f.write_text("start: hlt\n")
    out = cli("run", str(f), "--ring", "7")
    assert out.returncode == 2 and "ring must be between 0 and 3" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_warmup_reports_ready():
    out = cli("warmup")
    assert out.returncode == 0 and "kernels ready" in out.stdout
