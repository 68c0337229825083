"""The ``compare`` and ``run --technique`` commands: output, JSON shape and clear errors."""
import json

import pytest

from kernel_sim.__main__ import main
from kernel_sim.monitors import available_techniques


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_json_prints_the_results_contract_of_each_technique(capsys):
    code, out, err = run_cli(capsys, "compare", "--workload", "syscall", "--count", "5",
                             "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == available_techniques()          # keyed by name, the course's order
    for record in data.values():
        assert {"config", "whole_run", "measured", "instances", "path", "state_digest",
                "user_digest", "disk_digest"} <= set(record)
        assert record["config"]["count"] == record["measured"]["operations"] == 5
        assert record["measured"]["unit"] == "system call"
    # equivalence as the table reports it (trap_emulate runs on the strict ISA by default)
    for name, record in data.items():
        assert record["user_digest"] == data["native"]["user_digest"], name
        assert record["disk_digest"] == data["native"]["disk_digest"], name
        if name != "paravirt":
            assert record["state_digest"] == data["native"]["state_digest"], name
    assert data["native"]["measured"]["events"] == {}
    assert data["trap_emulate"]["measured"]["events"]["reflect:syscall"] == 5
    assert data["trap_emulate"]["whole_run"]["events"]["reflect:syscall"] >= 5


def test_compare_table_says_which_isa_trap_emulate_used_and_reports_divergence(capsys):
    # at 50 getpid calls a timer interrupt falls inside a system call, where the kernel's
    # pushf/cli/popf runs with IF = 1: the non-strict POPF cannot restore it (notebook 03)
    code, out, _ = run_cli(capsys, "compare", "--workload", "syscall", "--count", "50",
                           "--techniques", "native,trap_emulate", "--no-strict")
    assert code == 0
    assert "trap_emulate (non-strict)" in out
    assert "guest OS state (registers, memory, ticks) vs native: DIFFERS under trap_emulate" in out
    code, out, _ = run_cli(capsys, "compare", "--workload", "syscall", "--count", "50",
                           "--techniques", "native,trap_emulate")
    assert "trap_emulate (strict)" in out and "vs native: identical" in out


@pytest.mark.parametrize("argv,fragment", [
    (["--workload", "sycall"], "Did you mean 'syscall'"),
    (["--workload", "syscall", "--techniques", "native,bogus"], "unknown technique 'bogus'"),
    (["--workload", "syscall", "--cpu", "old"], "unknown CPU preset 'old'"),
    (["--workload", "syscall", "--count", "0"], "count must be"),
])
def test_compare_refuses_bad_arguments_with_a_message(capsys, argv, fragment):
    code, out, err = run_cli(capsys, "compare", *argv)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_run_technique_runs_a_program_as_a_guest(capsys, tmp_path):
    src = tmp_path / "hello.s"
    src.write_text("movi r1, 65\nout console, r1\nhlt\n")
    code, out, _ = run_cli(capsys, "run", str(src), "--technique", "trap_emulate", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["console"] == "A" and result["technique"] == "trap_emulate"
    assert result["monitor_events"]["emulate:out"] == 1 and result["monitor_events"]["emulate:hlt"] == 1


def test_run_technique_paravirt_refuses_a_program_without_boot_information(capsys, tmp_path):
    src = tmp_path / "hello.s"
    src.write_text("movi r1, 65\nvmcall 0\n")
    code, out, err = run_cli(capsys, "run", str(src), "--technique", "paravirt")
    assert code == 5 and "boot information" in err and "Traceback" not in err    # refused


HW_COMMANDS = [("native,binary_translation,hw_shadow", "first-vtx"),
               ("native,hw_shadow,hw_ept", "nehalem")]


@pytest.mark.parametrize("techniques,cpu", HW_COMMANDS)
def test_compare_hardware_assist_json_works_for_every_workload(capsys, techniques, cpu):
    from kernel_sim.guest import WORKLOADS
    for workload in sorted(WORKLOADS):
        code, out, err = run_cli(capsys, "compare", "--workload", workload, "--techniques",
                                 techniques, "--cpu", cpu, "--json")
        assert code == 0, (workload, err)
        data = json.loads(out)
        assert sorted(data) == sorted(techniques.split(",")), workload
        for name, record in data.items():
            assert record["state_digest"] == data["native"]["state_digest"], (workload, name)
            assert record["whole_run"]["stop"] == "halt", (workload, name)
        # every guest does I/O (the console) and the I/O devices are the monitor's
        assert data["hw_shadow"]["whole_run"]["events"]["IO_INSTRUCTION"] > 0, workload
        if "hw_ept" in data:
            # with EPT the guest's own page-table work never exits
            assert not {"CR_ACCESS", "INVLPG", "EXCEPTION_NMI:page_fault"} & \
                set(data["hw_ept"]["whole_run"]["events"]), workload
            assert data["hw_ept"]["whole_run"]["events"]["EPT_VIOLATION"] > 0, workload


def test_compare_refuses_hw_ept_on_first_generation_vtx(capsys):
    code, out, err = run_cli(capsys, "compare", "--workload", "syscall", "--techniques",
                             "native,hw_ept", "--cpu", "first-vtx")
    assert code == 5 and "no EPT" in err and "Traceback" not in err


def test_rare_per_operation_rates_are_not_printed_as_zero():
    from kernel_sim.tools.compare import rate
    assert rate(0) == "0.00" and rate(1.5) == "1.50" and rate(2500.0) == "2,500.00"
    assert rate(0.00061) == "0.00061" and float(rate(0.004)) == 0.004
