"""Every learner notebook keeps the course's conventions (nbmake executes them separately)."""
import json
import re
from pathlib import Path

import pytest

from kernel_sim.exercises import exercises

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"])


def test_the_first_three_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("00_start_here", "01_", "02_"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    for cell in cells(path):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_checks_versions_and_warms_up(path):
    first = next(c for c in cells(path) if c["cell_type"] == "code")
    assert "course.setup()" in source(first)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_objectives_summary_references(path):
    text = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    for heading in ("Learning objectives", "Summary", "References"):
        assert re.search(rf"^#+ .*{heading}", text, re.M | re.I), heading


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_two_exercises_with_registered_checks(path):
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    ids = re.findall(r"check\(\s*[\"'](\d\d\.\d+)[\"']", code)
    assert len(set(ids)) >= 2
    known = exercises()
    for ex_id in ids:
        assert ex_id in known, f"{ex_id} has no checker"
        assert ex_id.startswith(path.name[:2])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_links_to_its_answer_key_and_says_try_first(path):
    key = f"../course/solutions/{path.stem}.md"
    linking = [source(c) for c in cells(path)
               if c["cell_type"] == "markdown" and f"]({key})" in source(c)]
    assert linking, f"no Markdown link to {key}"
    assert any("try first" in text.lower() for text in linking)
    assert (path.parent / key).resolve().is_file(), f"{key} does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_built_from_a_master(path):
    master = path.parent.parent / "course" / "masters" / path.name
    assert master.is_file(), (f"edit {master.relative_to(path.parent.parent)} and run "
                              "`python -m course.build` instead of editing notebooks/ by hand")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_stay_short(path):
    for cell in cells(path):
        if cell["cell_type"] == "code":
            assert source(cell).count("\n") < 15, source(cell)[:200]


def test_committed_isa_reference_is_generated_from_the_table():
    from kernel_sim.tools.isa_reference import isa_reference_markdown
    committed = (Path(__file__).parent.parent / "course" / "isa_reference.md").read_text()
    assert committed.strip() == isa_reference_markdown().strip(), (
        "course/isa_reference.md is stale: run  python -m kernel_sim isa > course/isa_reference.md")


def test_the_course_map_in_notebook_00_marks_exactly_the_existing_notebooks_available():
    start = next(p for p in NOTEBOOKS if p.name.startswith("00_"))
    text = "\n".join(source(c) for c in cells(start) if c["cell_type"] == "markdown")
    rows = dict(re.findall(r"^\| (\d\d) \|.*\| ([^|]+) \|$", text, re.M))
    assert sorted(rows) == [f"{k:02d}" for k in range(13)]
    present = {p.name[:2] for p in NOTEBOOKS}
    for number, status in rows.items():
        if number == "00":
            continue
        assert ("available" in status) == (number in present), (number, status)


def test_the_readme_course_table_marks_exactly_the_existing_notebooks_available():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d\d) \|.*\| (available|planned) \|$", readme, re.M))
    assert sorted(rows) == [f"{k:02d}" for k in range(13)]
    present = {p.name[:2] for p in NOTEBOOKS}
    assert {n for n, status in rows.items() if status == "available"} == present
