"""The results contract (experiments.contract), its JSON Schema, the kinds monitors declare for
their events, and the command line's exit statuses.

Every CLI ``--json`` output is validated against ``kernel_sim/data/results.schema.json``, both
against the ``$defs`` entry of its command and against the whole schema (whose top-level
``oneOf`` must pick exactly that entry).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from kernel_sim import experiments as ex
from kernel_sim import results
from kernel_sim.__main__ import main
from kernel_sim.guest import GUEST_RAM
from kernel_sim.monitors import TECHNIQUE_ORDER, monitor_class
from kernel_sim.monitors.base import CATEGORIES
from kernel_sim.tools import status
from kernel_sim.tools.compare import _stops_status

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ex.results_schema()


def validate(data, definition: str) -> None:
    """``data`` satisfies ``$defs/definition`` and the whole schema picks exactly that one."""
    jsonschema.validate(data, {**SCHEMA, "$ref": f"#/$defs/{definition}"},
                        cls=jsonschema.Draft202012Validator)
    jsonschema.validate(data, SCHEMA, cls=jsonschema.Draft202012Validator)
    picked = [ref["$ref"] for ref in SCHEMA["oneOf"]
              if jsonschema.Draft202012Validator({**SCHEMA, "$ref": ref["$ref"]}).is_valid(data)]
    assert picked == [f"#/$defs/{definition}"], picked


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- the schema ------------------------------------------------------------------------------
def test_the_schema_is_valid_and_names_the_same_keys_as_the_code():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    d = SCHEMA["$defs"]
    assert d["counts"]["required"] == list(ex.COUNT_KEYS)
    assert d["region_categories"]["required"] == list(ex.REGION_CATEGORIES)
    assert d["whole_run_categories"]["required"] == list(CATEGORIES)
    assert d["hop_kind"]["enum"] == list(results.HOP_KINDS)
    assert d["contract"]["properties"]["contract_version"]["const"] == ex.CONTRACT_VERSION
    assert set(d["config"]["required"]) == {f.name for f in dataclasses.fields(ex.Config)}
    run_keys = {f.name for f in dataclasses.fields(results.Result)} | {"stop_description"}
    assert set(d["run"]["required"]) == run_keys
    assert set(d["technique_run"]["required"]) == \
        run_keys | {f.name for f in dataclasses.fields(results.TechniqueResult)}


def test_the_schema_rejects_a_contract_with_a_missing_count_or_an_unknown_hop():
    c = ex.contract(ex.Config("syscall", "native", count=5))
    validate(c, "contract")
    broken = json.loads(json.dumps(c))
    del broken["measured"]["counts"]["ring_copies"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, {**SCHEMA, "$ref": "#/$defs/contract"})
    broken = json.loads(json.dumps(c))
    broken["path"] = [{"from": "guest", "to": "monitor", "kind": "teleport", "cycles": 1}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, {**SCHEMA, "$ref": "#/$defs/contract"})


# ---- the contract -----------------------------------------------------------------------------
def test_the_contract_is_the_measured_region_and_the_run_it_was_measured_in():
    cfg = ex.Config("syscall", "trap_emulate", strict=True, count=30)
    c = ex.contract(cfg, warmup=5)
    assert json.loads(json.dumps(c)) == c                 # plain JSON types only
    m = ex.measure(cfg, warmup=5)
    assert c["measured"] == json.loads(json.dumps(m.as_dict()))
    assert c["measured"]["per_op"]["counts"]["traps"] == pytest.approx(m.counts["traps"] / 30)
    whole, warm = ex.run(cfg.replace(count=35)), ex.run(cfg.replace(count=5))
    assert c["whole_run"]["operations"] == 35
    assert (c["whole_run"]["instructions"], c["whole_run"]["cycles"]) == \
        (whole.instructions, whole.cycles)
    assert c["whole_run"]["events"] == whole.monitor_events and c["whole_run"]["stop"] == "halt"
    assert (c["user_digest"], c["state_digest"], c["disk_digest"]) == \
        (whole.user_digest, whole.state_digest, whole.disk_digest)
    assert c["config"] == {**ex.config_dict(ex.normalize(cfg)), "count": 30}
    assert c["config"]["knobs"] == {} and c["path"] == []
    (guest,) = c["instances"]
    assert guest["measured"] == c["measured"] and guest["technique"] == "trap_emulate"
    assert guest["memory_frames"] == GUEST_RAM // 4096 and guest["cpu_share"] == 1.0
    # the region starts where the warm-up-only run ended
    assert guest["start_cycles"] == whole.cycles - m.cycles == warm.cycles
    assert "cycles_by_domain" not in c


def test_boot_is_one_operation_that_starts_at_zero():
    c = ex.contract(ex.Config("boot", "native"))
    assert (c["measured"]["operations"], c["measured"]["warmup"]) == (1, 0)
    assert c["whole_run"]["operations"] == 1
    assert c["measured"]["cycles"] == c["whole_run"]["cycles"]
    assert c["instances"][0]["start_cycles"] == 0
    validate(c, "contract")


def test_assemble_contract_checks_hop_kinds_and_adds_domains_only_when_given():
    r = ex.run(ex.Config("syscall", count=5))
    parts = dict(config={}, whole={}, measured={}, instances=[], digests=r)
    assert "cycles_by_domain" not in ex.assemble_contract(**parts)
    c = ex.assemble_contract(**parts, path=[{"from": "guest", "to": "monitor", "kind": "exit",
                                             "cycles": 10}], cycles_by_domain={"dom0": 3})
    assert c["path"][0]["kind"] == "exit" and c["cycles_by_domain"] == {"dom0": 3}
    with pytest.raises(ValueError, match="unknown hop kind 'teleport'"):
        ex.assemble_contract(**parts, path=[{"from": "a", "to": "b", "kind": "teleport",
                                             "cycles": 1}])


# ---- event kinds: a declaration of each technique ---------------------------------------------
def test_each_technique_declares_the_kind_of_its_events():
    assert monitor_class("trap_emulate").event_kind("emulate:cli") == "trap"
    assert monitor_class("trap_emulate").event_kind("reflect:syscall") is None
    assert monitor_class("trap_emulate").event_kind("shadow:root_new") is None
    assert monitor_class("binary_translation").event_kind("callout:emulate:cli") == "callout"
    assert monitor_class("binary_translation").event_kind("bt:translate") is None
    assert monitor_class("paravirt").event_kind("hypercall:mmu_update") == "hypercall"
    assert monitor_class("paravirt").event_kind("reflect:syscall") is None
    for name in ("hw_shadow", "hw_ept"):
        assert monitor_class(name).event_kind("EPT_VIOLATION") == "exit"
        assert monitor_class(name).event_kind("EXCEPTION_NMI:page_fault") == "exit"
    assert monitor_class("emulation").event_kind("emulation:interpreted") is None
    for name in TECHNIQUE_ORDER:
        assert set(monitor_class(name).event_kinds.values()) <= set(results.HOP_KINDS) | {None}


@pytest.mark.parametrize("technique", TECHNIQUE_ORDER)
def test_every_event_a_technique_counts_has_a_kind_of_the_vocabulary(technique):
    cls = monitor_class(technique)
    for workload in ("syscall", "pgfault"):
        r = ex.run(ex.Config(workload, technique, count=5, strict=ex.default_strict(technique)))
        for reason in r.monitor_events:
            assert cls.event_kind(reason) in set(results.HOP_KINDS) | {None}, reason


def test_counts_follow_the_declared_kinds(monkeypatch):
    cfg = ex.Config("syscall", "trap_emulate", strict=True, count=20)
    m = ex.measure(cfg)
    emulated = sum(n for k, n in m.events.items() if k.startswith("emulate:"))
    assert emulated > 0 and m.counts["world_switches"] == 0
    cls = monitor_class("trap_emulate")
    monkeypatch.setattr(cls, "event_kinds", {**cls.event_kinds, "emulate:": "world_switch"})
    moved = ex.measure(cfg)
    assert moved.counts["world_switches"] == emulated
    assert moved.counts["traps"] == m.counts["traps"] - emulated
    hw = ex.measure(ex.Config("pgfault", "hw_shadow", count=10))
    assert hw.counts["exits"] == sum(hw.events.values()) > 0


# ---- every --json output satisfies the schema --------------------------------------------------
def test_compare_json_satisfies_the_schema(capsys):
    code, out, err = run_cli(capsys, "compare", "--workload", "pgfault", "--count", "5",
                             "--json")
    assert code == 0, err
    validate(json.loads(out), "compare")


def test_run_json_satisfies_the_schema(capsys, tmp_path):
    src = tmp_path / "p.s"
    src.write_text("start: movi r1, 72\n out console, r1\n hlt\n")
    code, out, _ = run_cli(capsys, "run", str(src), "--json")
    assert code == 0
    validate(json.loads(out), "run")


@pytest.mark.parametrize("technique", TECHNIQUE_ORDER)
def test_run_technique_json_satisfies_the_schema(capsys, tmp_path, technique):
    src = tmp_path / "p.s"
    src.write_text(".if PARAVIRT\n movi r1, 65\n vmcall 0\n.else\n movi r1, 65\n"
                   " out console, r1\n hlt\n.endif\n")
    code, out, err = run_cli(capsys, "run", str(src), "--technique", technique, "--json")
    if code == status.REFUSED:                  # paravirt wants boot information
        assert "boot information" in err
        return
    assert code == 0, err
    data = json.loads(out)
    assert data["technique"] == technique
    validate(data, "technique_run")


@pytest.mark.parametrize("args", [("--nested-levels", "4"), ("--nested-levels", "0"),
                                  ("--access", "write", "--address", "0x00400000")])
def test_pagewalk_json_satisfies_the_schema(capsys, args):
    code, out, err = run_cli(capsys, "pagewalk", "--json", *args)
    assert code == 0, err
    validate(json.loads(out), "pagewalk")


# ---- the text table ----------------------------------------------------------------------------
def test_compare_table_is_per_operation_and_labels_the_whole_run(capsys):
    code, out, _ = run_cli(capsys, "compare", "--workload", "syscall", "--count", "12",
                           "--techniques", "native,paravirt")
    assert code == 0
    assert "12 operations (one system call each)" in out
    assert "per system call of the measured region (12 operations after 10 warm-up ones)" in out
    assert "whole run: instructions" in out and "whole run: cycles" in out
    assert "hypercalls/op" in out


# ---- exit statuses -----------------------------------------------------------------------------
def cli(*args):
    return subprocess.run([sys.executable, "-m", "kernel_sim", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_the_status_codes_are_distinct_and_documented():
    codes = [code for code, _, _ in status.STATUSES]
    assert codes == [status.OK, status.BAD_INPUT, status.TRAPPED, status.BUDGET,
                     status.REFUSED]
    assert len(set(codes)) == len(codes) and 1 not in codes
    import kernel_sim.__main__ as cli_module
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code, _, _ in status.STATUSES:
        assert f"\n{code}  " in cli_module.__doc__, code
        assert f"| {code} |" in readme, code
    assert status.help_text() in cli_module._parser().format_help()


def test_status_0_a_program_that_halts(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("start: hlt\n")
    assert cli("run", str(src)).returncode == status.OK == 0


@pytest.mark.parametrize("argv", [
    ["run", "{bad}"], ["run", "{missing}"], ["run", "{good}", "--ring", "7"],
    ["run", "{good}", "--technique", "bogus"],
    ["compare", "--workload", "sycall"], ["compare", "--workload", "syscall", "--count", "0"],
    ["pagewalk", "--guest-levels", "9"]])
def test_status_2_bad_input(tmp_path, capsys, argv):
    (tmp_path / "bad.s").write_text("start: ad r1, r2, r3\n")
    (tmp_path / "good.s").write_text("start: hlt\n")
    argv = [a.format(bad=tmp_path / "bad.s", missing=tmp_path / "nope.s",
                     good=tmp_path / "good.s") for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == status.BAD_INPUT == 2 and err and "Traceback" not in err


def test_status_3_an_unhandled_trap(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("start: movi r1, 1\n div r1, r1, r0\n")
    out = cli("run", str(src))
    assert out.returncode == status.TRAPPED == 3
    assert "stopped abnormally: unhandled_trap" in out.stderr and "stopped:" in out.stdout


def test_status_4_the_budget_ran_out_and_the_message_names_count(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("start: jmp start\n")
    out = cli("run", str(src), "--count", "1000", "--json")
    assert out.returncode == status.BUDGET == 4 and "--count" in out.stderr
    assert json.loads(out.stdout)["stop"] == "budget"          # the output still comes
    budget = {"config": {"budget": 100, "count": 7}, "whole_run": {"stop": "budget"}}
    code, message = _stops_status({"native": {"whole_run": {"stop": "halt"}},
                                   "hw_ept": budget})
    assert code == 4 and "--count" in message and message.startswith("hw_ept")


def test_status_5_a_refused_combination(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compare", "--workload", "syscall", "--techniques",
                           "native,hw_ept", "--cpu", "first-vtx")
    assert code == status.REFUSED == 5 and "no EPT" in err
    src = tmp_path / "p.s"
    src.write_text("start: hlt\n")
    code, _, err = run_cli(capsys, "run", str(src), "--technique", "hw_ept", "--cpu",
                           "first-vtx")
    assert code == 5 and "no EPT" in err and "Traceback" not in err
