"""The instructor material in ``course/`` stays true to the notebooks and the repository.

Three documents are checked:

* ``course/syllabus.md`` -- one ``## NN — Title`` section per notebook with the fields
  **File**, **Status**, **Time**, **Prerequisites**, **Seed section** and **Objectives**.  Every
  notebook in ``notebooks/`` is listed, a notebook is ``available`` exactly when its file exists,
  and an available notebook has as many objectives here as in its "Learning objectives" cell.
* ``course/glossary.md`` -- tables ``English | 中文 | meaning | notebooks``.  Every term of the
  seed text is there, and every notebook a row names either exists and contains the term, or is
  marked ``(planned)`` and is a planned notebook of the syllabus.
* ``course/instructor_guide.md`` -- every ``make X`` it cites is a Makefile target, every
  ``python -m kernel_sim SUB`` a CLI command, every ``python -m course.X`` a module of the
  repository, and every repository path it names exists.

The parsers and the checks are plain functions that return a list of problems; the tests at the
bottom feed them broken documents, so a check that could never fail would be noticed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYLLABUS = REPO / "course" / "syllabus.md"
GLOSSARY = REPO / "course" / "glossary.md"
GUIDE = REPO / "course" / "instructor_guide.md"
NOTEBOOKS = REPO / "notebooks"

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
#: The section headings of the seed text (a Chinese survey of virtualization and KVM), verbatim.
#: Together the syllabus entries must cover all of them.
SEED_SECTIONS = (
    "虚拟化", "历史", "分类", "关键字及扩展知识", "虚拟化技术分类", "纯软件仿真", "虚拟化层翻译",
    "全虚拟化（无硬件支持模式）", "半虚拟化（也称类虚拟化）", "全虚拟化（硬件辅助模式）", "容器",
    "虚拟化主流模型", "Hypervisor模型", "Host模型（宿主机）", "混合模型",
)

#: The technical terms of the seed text, spelled as the seed spells them (Chinese, or the Latin
#: names it uses).  Each must be a name in some glossary row.
SEED_TERMS = (
    "虚拟化", "虚拟技术", "资源管理", "实体资源", "CPU", "内存", "磁盘空间", "网络适配器",
    "计算能力", "资料存储", "虚拟机监视器", "虚拟机", "大型计算机", "软件抽象层", "交互访问",
    "系统", "存储", "网络", "GPU", "软件", "硬件", "虚拟化平台", "VMM", "客户机", "Guest VM",
    "guest OS", "来宾", "X86保护环", "Ring0", "Ring1", "Ring2", "Ring3", "内核", "应用程序",
    "纯软件仿真", "模拟", "QEMU", "Bochs", "PearPC", "效率", "虚拟化层", "全虚拟化",
    "无硬件支持模式", "Hypervisor", "异常捕捉", "捕获翻译", "消耗", "半虚拟化", "类虚拟化", "开源",
    "源码", "硬件辅助模式", "Inter VT", "AMD-V", "Ring -1", "容器", "进程", "虚拟化主流模型",
    "Hypervisor模型", "操作系统", "物理资源", "I/O设备", "设备驱动程序", "Host模型", "宿主机",
    "host OS", "内核模块", "调度", "KVM", "Kernel-based Virtual Machine", "Linux内核", "混合模型",
    "特权级别", "Service OS", "内存管理", "上下文", "开销", "Xen", "Acrn", "minos", "bare-metal",
    "type-1", "type-2",
)

#: Known gaps, to be emptied: glossary terms (main English name) that no available notebook
#: mentions yet.  Such a row names planned notebooks only.  When a notebook gains the term, the
#: test below fails until the term leaves this list and the notebook joins the row.
KNOWN_GAPS: set = set()

#: Modules the guide may run with ``python -m`` that are not part of this repository, with the
#: pyproject extra that installs them (None: comes with Python or pip).
EXTERNAL_MODULES = {"pip": None, "venv": None, "nbgrader": "instructor"}

#: nbgrader's current command-line subcommands (nbgrader 0.9), to catch typos in the guide.  The
#: old names ``assign``, ``release``, ``fetch`` and ``feedback`` still work but are deprecated.
NBGRADER_COMMANDS = {
    "quickstart", "generate_assignment", "release_assignment", "fetch_assignment", "submit",
    "collect", "zip_collect", "autograde", "generate_feedback", "release_feedback",
    "fetch_feedback", "validate", "db", "export", "list", "generate_config", "generate_solution",
    "update", "formgrade", "extension",
}

STATUSES = ("available", "planned")


class DocFormatError(ValueError):
    """A course document does not follow its documented structure."""


# ---------------------------------------------------------------------------------------------
# Text utilities
# ---------------------------------------------------------------------------------------------
def strip_fences(text: str) -> str:
    """Blank out fenced code blocks (keeping line numbers), so examples are not parsed."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uff00-\uffef]")


def normalize(text: str) -> str:
    """Lower-case ``text`` and drop Markdown decoration, so terms match across line breaks.

    Block-quote markers, ``*`` and backticks go; a hyphen between two letters or digits counts as
    a space (``bare-metal`` = ``bare metal``), but a minus before a digit stays (``ring -1`` is not
    ``ring 1``); runs of whitespace become one space.
    """
    text = text.replace("\u2212", "-")
    text = re.sub(r"(?m)^\s*(?:>\s?)+", "", text)
    text = text.replace("*", "").replace("`", "")
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)
    return re.sub(r"\s+", " ", text).lower().strip()


def contains_term(text: str, term: str) -> bool:
    """True when ``term`` occurs in ``text`` as a word (case-insensitive; plural -s/-es allowed).

    Terms with Chinese characters are matched with all whitespace removed (Chinese has no spaces,
    and a line break may fall inside a word); ends made of Latin letters or digits must not touch
    other letters or digits, so ``kernel`` is not found in ``kernel_sim``.
    """
    t, n = normalize(term), normalize(text)
    if not t:
        return False
    if _CJK.search(t):
        t, n = re.sub(r"\s", "", t), re.sub(r"\s", "", n)
    left = r"(?<!\w)" if re.match(r"\w", t[0]) and not _CJK.match(t[0]) else ""
    right = r"(?:s|es)?(?!\w)" if re.match(r"\w", t[-1]) and not _CJK.match(t[-1]) else ""
    return re.search(left + re.escape(t) + right, n) is not None


def notebook_text(path: Path) -> str:
    """All cell sources of a notebook, one after the other."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c.get("source", "")) for c in nb["cells"])


def notebook_objective_count(path: Path) -> int:
    """Number of top-level bullets in the notebook's "Learning objectives" Markdown cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        src = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown" and re.search(r"^#+\s*Learning objectives", src,
                                                         re.M | re.I):
            return len(re.findall(r"^[-*] ", src, re.M))
    raise DocFormatError(f"{path.name}: no 'Learning objectives' cell")


def existing_notebooks() -> dict[str, Path]:
    """``{"02": path}`` for every learner notebook in ``notebooks/``."""
    return {p.name[:2]: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


# ---------------------------------------------------------------------------------------------
# Syllabus
# ---------------------------------------------------------------------------------------------
@dataclass
class Entry:
    number: str
    title: str
    file: str
    status: str
    minutes: int
    prerequisites: list[str]
    seed_sections: list[str]
    objectives: list[str]
    line: int


HEADING_RE = re.compile(r"^## (\d\d) — (\S.*)$")
FIELD_RE = re.compile(r"^\*\*([A-Za-z ]+):\*\*\s*(.*)$")
FIELDS = ("File", "Status", "Time", "Prerequisites", "Seed section", "Objectives")


def _split_note(value: str) -> str:
    """The part of a field before an optional ' — note'."""
    return value.split(" — ", 1)[0].strip()


def parse_syllabus(text: str) -> list[Entry]:
    """Parse the syllabus; raise DocFormatError naming the line of the first mistake."""
    lines = strip_fences(text).split("\n")
    raw: list[tuple[int, str, str, dict, list]] = []
    current = None
    in_objectives = False
    for i, line in enumerate(lines, 1):
        if line.startswith("## "):
            m = HEADING_RE.match(line)
            current = None
            in_objectives = False
            if m:
                current = (i, m.group(1), m.group(2).strip(), {}, [])
                raw.append(current)
            elif re.match(r"^## \d", line):
                raise DocFormatError(f"line {i}: expected '## NN — Title', got {line!r}")
            continue
        if current is None:
            continue
        fm = FIELD_RE.match(line)
        if fm:
            name, value = fm.group(1), fm.group(2).strip()
            if name not in FIELDS:
                raise DocFormatError(f"line {i}: unknown field {name!r} (known: {FIELDS})")
            if name in current[3]:
                raise DocFormatError(f"line {i}: field {name!r} given twice")
            current[3][name] = (i, value)
            in_objectives = name == "Objectives"
            continue
        if in_objectives and line.startswith("- "):
            current[4].append(line[2:].strip())
        elif in_objectives and line.strip() and not line.startswith("  "):
            in_objectives = False

    entries: list[Entry] = []
    for line_no, number, title, fields, objectives in raw:
        where = f"entry {number} (line {line_no})"
        missing = [f for f in FIELDS if f not in fields]
        if missing:
            raise DocFormatError(f"{where}: missing field(s) {', '.join(missing)}")
        file = fields["File"][1].strip("`")
        if not re.fullmatch(rf"{number}_[a-z0-9_]+\.ipynb", file):
            raise DocFormatError(f"{where}: File must be `{number}_name.ipynb`, got {file!r}")
        status = fields["Status"][1]
        if status not in STATUSES:
            raise DocFormatError(f"{where}: Status must be one of {STATUSES}, got {status!r}")
        tm = re.fullmatch(r"(\d+) min", fields["Time"][1])
        if not tm or int(tm.group(1)) <= 0:
            raise DocFormatError(f"{where}: Time must be 'N min' with N > 0, "
                                 f"got {fields['Time'][1]!r}")
        prereq = _split_note(fields["Prerequisites"][1])
        prereqs = [] if prereq == "none" else [p.strip() for p in prereq.split(",")]
        if any(not re.fullmatch(r"\d\d", p) for p in prereqs):
            raise DocFormatError(f"{where}: Prerequisites must be 'none' or numbers like "
                                 f"'00, 01', got {prereq!r}")
        seed = _split_note(fields["Seed section"][1])
        if not seed:
            raise DocFormatError(f"{where}: Seed section is empty (write 'none')")
        sections = [] if seed == "none" else [s.strip() for s in seed.split(",")]
        if fields["Objectives"][1]:
            raise DocFormatError(f"{where}: put objectives as '- ' bullets below **Objectives:**")
        if not objectives or any(not o for o in objectives):
            raise DocFormatError(f"{where}: no objectives (or an empty bullet)")
        entries.append(Entry(number, title, file, status, int(tm.group(1)), prereqs, sections,
                             objectives, line_no))

    if not entries:
        raise DocFormatError("no '## NN — Title' entries found")
    numbers = [e.number for e in entries]
    expected = [f"{k:02d}" for k in range(len(entries))]
    if numbers != expected:
        raise DocFormatError(f"entries must run 00, 01, ... without gaps or repeats; got {numbers}")
    for e in entries:
        later = [p for p in e.prerequisites if p >= e.number]
        if later:
            raise DocFormatError(f"entry {e.number}: prerequisites {later} are not earlier "
                                 "notebooks")
        unknown = [s for s in e.seed_sections if s not in SEED_SECTIONS]
        if unknown:
            raise DocFormatError(f"entry {e.number}: {unknown} are not seed headings "
                                 f"(known: {', '.join(SEED_SECTIONS)})")
    return entries


def syllabus_problems(entries: list[Entry], existing: dict[str, Path]) -> list[str]:
    """What is wrong between the syllabus and the notebooks that exist."""
    problems = []
    by_number = {e.number: e for e in entries}
    for number, path in existing.items():
        e = by_number.get(number)
        if e is None:
            problems.append(f"{path.name} is not in the syllabus")
            continue
        if e.file != path.name:
            problems.append(f"entry {number} names {e.file}, but the notebook is {path.name}")
        if e.status != "available":
            problems.append(f"{path.name} exists: entry {number} must say 'available'")
        else:
            n = notebook_objective_count(path)
            if n != len(e.objectives):
                problems.append(f"entry {number} has {len(e.objectives)} objectives, "
                                f"{path.name} has {n}: restate the notebook's objectives")
    for e in entries:
        if e.status == "available" and e.number not in existing:
            problems.append(f"entry {e.number} says available, but notebooks/{e.file} is missing")
    covered = {s for e in entries for s in e.seed_sections}
    for s in SEED_SECTIONS:
        if s not in covered:
            problems.append(f"no syllabus entry covers the seed section {s!r}")
    return problems


# ---------------------------------------------------------------------------------------------
# Glossary
# ---------------------------------------------------------------------------------------------
GLOSSARY_HEADER = ["English", "中文", "meaning", "notebooks"]


@dataclass
class Row:
    english: list[str]
    chinese: list[str]
    meaning: str
    notebooks: list[tuple[str, bool]]  # (number, planned)
    line: int

    @property
    def name(self) -> str:
        return self.english[0]


def _names(cell: str) -> list[str]:
    """The names of a name cell: split at ' / ', notes in parentheses removed."""
    out = []
    for part in cell.split(" / "):
        part = re.sub(r"\([^)]*\)|（[^）]*）", "", part).strip()
        if part:
            out.append(part)
    return out


def _cells(line: str) -> list[str]:
    body = line.strip()
    if not (body.startswith("|") and body.endswith("|")):
        raise DocFormatError(f"not a table row: {line!r}")
    return [c.strip() for c in body[1:-1].split("|")]


def parse_glossary(text: str) -> list[Row]:
    """Parse every table of the glossary; raise DocFormatError naming the line of a mistake."""
    rows: list[Row] = []
    lines = strip_fences(text).split("\n")
    in_table = False
    for i, line in enumerate(lines, 1):
        if not line.lstrip().startswith("|"):
            in_table = False
            continue
        cells = _cells(line)
        if not in_table:
            if cells != GLOSSARY_HEADER:
                raise DocFormatError(f"line {i}: table header must be "
                                     f"{' | '.join(GLOSSARY_HEADER)}, got {cells}")
            in_table = True
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        if len(cells) != 4:
            raise DocFormatError(f"line {i}: expected 4 cells, got {len(cells)} "
                                 "(is there a '|' inside a cell?)")
        english, chinese, meaning, notebooks = cells
        for label, value in (("English", english), ("中文", chinese), ("meaning", meaning),
                             ("notebooks", notebooks)):
            if not value:
                raise DocFormatError(f"line {i}: empty {label} cell")
        refs = []
        for token in notebooks.split(","):
            m = re.fullmatch(r"(\d\d)( \(planned\))?", token.strip())
            if not m:
                raise DocFormatError(f"line {i}: notebook reference {token.strip()!r} must be "
                                     "'NN' or 'NN (planned)'")
            refs.append((m.group(1), m.group(2) is not None))
        if len({n for n, _ in refs}) != len(refs):
            raise DocFormatError(f"line {i}: a notebook is named twice")
        rows.append(Row(_names(english), _names(chinese), meaning, refs, i))
    if not rows:
        raise DocFormatError("no glossary rows found")
    names = [r.name.lower() for r in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DocFormatError(f"terms listed twice: {twice}")
    return rows


def row_found_in(row: Row, text: str) -> bool:
    return any(contains_term(text, name) for name in row.english + row.chinese)


def glossary_problems(rows: list[Row], entries: list[Entry], texts: dict[str, str],
                      known_gaps: set[str]) -> list[str]:
    """What is wrong between the glossary, the syllabus and the notebooks' text.

    ``texts`` maps the number of every existing notebook to its text.
    """
    problems = []
    syllabus = {e.number for e in entries}
    names = {r.name for r in rows}
    for gap in sorted(known_gaps - names):
        problems.append(f"known gap {gap!r} is not a glossary term")
    for r in rows:
        term = f"{r.name!r} (line {r.line})"
        for number, planned in r.notebooks:
            if number not in syllabus:
                problems.append(f"{term} names notebook {number}, which the syllabus lacks")
            elif planned and number in texts:
                problems.append(f"{term}: notebook {number} exists now; drop '(planned)' "
                                "(and check it uses the term)")
            elif not planned and number not in texts:
                problems.append(f"{term} names notebook {number}, which does not exist; "
                                "mark it '(planned)'")
            elif not planned and not row_found_in(r, texts[number]):
                problems.append(f"{term}: notebook {number} contains none of "
                                f"{r.english + r.chinese}")
        existing_refs = [n for n, planned in r.notebooks if not planned]
        if r.name in known_gaps:
            now = sorted(n for n, t in texts.items() if row_found_in(r, t))
            if now:
                problems.append(f"{term} is a known gap, but notebook(s) {now} use it now: "
                                "remove it from KNOWN_GAPS and list them")
        elif not existing_refs:
            problems.append(f"{term} names no existing notebook that uses it")
    return problems


def missing_seed_terms(rows: list[Row], seed_terms=SEED_TERMS) -> list[str]:
    """Seed terms that are not a name in any row (compared after normalization)."""
    known = {normalize(n) for r in rows for n in r.english + r.chinese}
    return [t for t in seed_terms if normalize(t) not in known]


# ---------------------------------------------------------------------------------------------
# Instructor guide
# ---------------------------------------------------------------------------------------------
REPO_PATH_RE = re.compile(
    r"`((?:course|notebooks|binder|kernel_sim|tests|benchmarks)/[^`\s]*"
    r"|Makefile|pyproject\.toml|README\.md)`")


def make_targets(makefile_text: str) -> set[str]:
    """Targets defined in a Makefile (rules, not variable assignments)."""
    targets = set()
    for line in makefile_text.split("\n"):
        m = re.match(r"^([A-Za-z0-9_.\-]+(?:\s+[A-Za-z0-9_.\-]+)*)\s*:(?![=:])", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def cli_subcommands() -> set[str]:
    """The subcommands of ``python -m kernel_sim``, read from its argument parser."""
    import argparse

    from kernel_sim import __main__ as cli

    parser = cli._parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("python -m kernel_sim has no subcommands")


def module_exists(module: str, root: Path) -> bool:
    """True when ``python -m module`` would find ``module`` inside the repository ``root``."""
    parts = module.split(".")
    base = root.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


def load_pyproject(root: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


def pyproject_extras(root: Path) -> dict[str, list[str]]:
    return load_pyproject(root)["project"].get("optional-dependencies", {})


def code_of(text: str) -> str:
    """The code in a Markdown text: fenced blocks and inline code spans, one per line.

    Commands are looked for only here, so prose such as "make everything readable" is not
    mistaken for a ``make`` command.
    """
    out, fenced = [], False
    prose = []
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            out.append(line)
        else:
            prose.append(line)
    out.extend(re.findall(r"`([^`]+)`", "\n".join(prose)))
    return "\n".join(out)


def guide_problems(text: str, root: Path, subcommands: set[str], targets: set[str]) -> list[str]:
    """Commands and paths the guide cites that the repository ``root`` does not have."""
    problems = []
    paths_text, text = text, code_of(text)
    for target in sorted(set(re.findall(r"\bmake ([a-z][\w-]*)", text))):
        if target not in targets:
            problems.append(f"`make {target}`: the Makefile has no target {target!r}")
    extras = pyproject_extras(root)
    for module, rest in sorted(set(re.findall(r"\bpython3? -m ([\w.]+)((?: [\w-]+)?)", text))):
        sub = rest.strip()
        top = module.split(".")[0]
        if top == "kernel_sim":
            if module != "kernel_sim":
                if not module_exists(module, root):
                    problems.append(f"`python -m {module}`: no such module in the repository")
            elif not sub or sub.startswith("-"):
                continue
            elif sub not in subcommands:
                problems.append(f"`python -m kernel_sim {sub}`: the CLI has no command {sub!r} "
                                f"(it has {sorted(subcommands)})")
        elif top == "course":
            if not module_exists(module, root):
                problems.append(f"`python -m {module}`: no such module in the repository")
        elif top in EXTERNAL_MODULES:
            extra = EXTERNAL_MODULES[top]
            if extra and not any(dep.lower().startswith(top) for dep in extras.get(extra, [])):
                problems.append(f"`python -m {module}` needs the {extra!r} extra to install {top}")
        else:
            problems.append(f"`python -m {module}`: unknown module (add it to EXTERNAL_MODULES "
                            "if it is an outside tool)")
    for cmd in sorted(set(re.findall(r"\bnbgrader ([a-z_]+)", text))):
        if cmd not in NBGRADER_COMMANDS:
            problems.append(f"`nbgrader {cmd}` is not an nbgrader command")
    for extra in sorted(set(re.findall(r"\.\[([\w-]+)\]", text))):
        if extra not in extras:
            problems.append(f"extra [{extra}] is not defined in pyproject.toml")
    for path in sorted(set(REPO_PATH_RE.findall(paths_text))):
        clean = path.rstrip("/")
        if "<" in clean or "NN" in clean:
            continue
        found = (any(root.glob(clean)) if "*" in clean else (root / clean).exists())
        if not found:
            problems.append(f"`{path}` does not exist in the repository")
    return problems


# ---------------------------------------------------------------------------------------------
# Tests on the real documents
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return parse_syllabus(SYLLABUS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return parse_glossary(GLOSSARY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {number: notebook_text(p) for number, p in existing_notebooks().items()}


def test_syllabus_lists_every_notebook_with_objectives_and_time(entries):
    assert existing_notebooks(), "no notebooks found"
    files = {e.file for e in entries}
    for path in existing_notebooks().values():
        assert path.name in files
    for e in entries:
        assert e.objectives and e.minutes > 0


def test_syllabus_matches_the_notebooks_that_exist(entries):
    assert syllabus_problems(entries, existing_notebooks()) == []


def test_syllabus_plans_the_thirteen_notebooks_of_the_design(entries):
    assert [e.number for e in entries][:13] == [f"{k:02d}" for k in range(13)]
    planned = {e.number: e.file for e in entries if e.status == "planned"}
    assert all(n >= "03" for n in planned), "00-02 exist: only 03 and later can be planned"


def test_glossary_rows_are_complete_and_honest(rows, entries, texts):
    assert glossary_problems(rows, entries, texts, KNOWN_GAPS) == []


def test_every_seed_term_is_in_the_glossary(rows):
    assert missing_seed_terms(rows) == []


def test_guide_cites_only_real_commands_and_files():
    text = GUIDE.read_text(encoding="utf-8")
    targets = make_targets((REPO / "Makefile").read_text(encoding="utf-8"))
    assert guide_problems(text, REPO, cli_subcommands(), targets) == []


def test_guide_covers_what_an_instructor_needs():
    text = GUIDE.read_text(encoding="utf-8")
    for needle in ("course/nbgrader_config.py", "course/masters", "course/solutions",
                   "python -m kernel_sim warmup", "nbgrader generate_assignment",
                   "nbgrader autograde", "pip install -e '.[instructor]'", "NUMBA_CACHE_DIR",
                   "NUMBA_CPU_NAME=generic", "public checks passed", "ExecutePreprocessor.timeout",
                   "python -m course.build --check", "Littlest JupyterHub", "Zero to JupyterHub",
                   "Binder"):
        assert needle in text, needle
    assert "all tests passed" not in text.replace('"all tests passed"', "")


def test_guide_binder_link_is_the_project_one():
    text = GUIDE.read_text(encoding="utf-8")
    data = load_pyproject(REPO)
    links = set(re.findall(r"https://mybinder\.org/v2/[^\s)`>\"]+", text))
    assert links == {data["project"]["urls"]["Binder"]}


# ---------------------------------------------------------------------------------------------
# The checks can fail: broken documents
# ---------------------------------------------------------------------------------------------
GOOD_SYLLABUS = """# Syllabus
```
## 99 — an example inside a fence is ignored
```
## 00 — Start
**File:** `00_start.ipynb`
**Status:** available
**Time:** 15 min
**Prerequisites:** none — nothing
**Seed section:** none — how to use it
**Objectives:**
- run a cell
- check an answer

## 01 — History
**File:** `01_history.ipynb`
**Status:** planned
**Time:** 45 min
**Prerequisites:** 00
**Seed section:** 虚拟化, 历史
**Objectives:**
- explain virtualization
"""


def test_parse_syllabus_reads_a_good_one():
    entries = parse_syllabus(GOOD_SYLLABUS)
    assert [(e.number, e.file, e.status, e.minutes) for e in entries] == [
        ("00", "00_start.ipynb", "available", 15), ("01", "01_history.ipynb", "planned", 45)]
    assert entries[0].objectives == ["run a cell", "check an answer"]
    assert entries[1].prerequisites == ["00"] and entries[1].seed_sections == ["虚拟化", "历史"]


@pytest.mark.parametrize("old, new, message", [
    ("**Time:** 15 min", "**Time:** 0 min", "Time"),
    ("**Time:** 15 min", "**Time:** soon", "Time"),
    ("**Time:** 15 min\n", "", "missing field"),
    ("- run a cell\n- check an answer\n", "", "no objectives"),
    ("**Status:** planned", "**Status:** maybe", "Status"),
    ("`01_history.ipynb`", "`history.ipynb`", "File"),
    ("## 01 — History\n**File:** `01_history.ipynb`",
     "## 02 — History\n**File:** `02_history.ipynb`", "without gaps"),
    ("## 01 — History", "## 01 History", "expected '## NN — Title'"),
    ("**Prerequisites:** 00", "**Prerequisites:** 01", "not earlier"),
    ("**Prerequisites:** 00", "**Prerequisites:** notebook zero", "Prerequisites"),
    ("虚拟化, 历史", "虚拟化, History", "not seed headings"),
    ("**Seed section:** none — how to use it", "**Seed section:**", "Seed section"),
    ("**File:** `00_start.ipynb`", "**File:** `00_start.ipynb`\n**File:** `x.ipynb`", "twice"),
    ("**Objectives:**\n- run", "**Objectives:** run\n- run", "bullets"),
])
def test_parse_syllabus_rejects_broken_ones(old, new, message):
    broken = GOOD_SYLLABUS.replace(old, new, 1)
    assert broken != GOOD_SYLLABUS
    with pytest.raises(DocFormatError, match=message):
        parse_syllabus(broken)


def _fake_notebook(tmp_path: Path, name: str, bullets: int, extra: str = "") -> Path:
    objectives = "## Learning objectives\n\n" + "".join(f"- goal {k}\n" for k in range(bullets))
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": objectives + extra}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / name
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def test_syllabus_problems_catch_status_and_objective_drift(tmp_path):
    entries = parse_syllabus(GOOD_SYLLABUS)
    ok = {"00": _fake_notebook(tmp_path, "00_start.ipynb", 2)}
    problems = syllabus_problems(entries, ok)
    assert [p for p in problems if "seed section" not in p] == []

    drift = {"00": _fake_notebook(tmp_path, "00_start.ipynb", 3)}
    assert any("objectives" in p for p in syllabus_problems(entries, drift))

    landed = dict(ok, **{"01": _fake_notebook(tmp_path, "01_history.ipynb", 1)})
    assert any("must say 'available'" in p for p in syllabus_problems(entries, landed))

    unlisted = dict(ok, **{"02": _fake_notebook(tmp_path, "02_new.ipynb", 1)})
    assert any("not in the syllabus" in p for p in syllabus_problems(entries, unlisted))

    assert any("is missing" in p for p in syllabus_problems(entries, {}))
    assert any("'历史'" not in p and "seed section" in p for p in syllabus_problems(entries, ok))


GOOD_GLOSSARY = """# Glossary
| English | 中文 | meaning | notebooks |
|---|---|---|---|
| kernel | 内核 | the core of an OS | 00 |
| ring -1 / hypervisor mode | Ring -1（非正式） | informal name | 01 (planned) |
"""


def test_parse_glossary_reads_a_good_one():
    rows = parse_glossary(GOOD_GLOSSARY)
    assert [r.english for r in rows] == [["kernel"], ["ring -1", "hypervisor mode"]]
    assert rows[1].chinese == ["Ring -1"] and rows[1].notebooks == [("01", True)]


@pytest.mark.parametrize("old, new, message", [
    ("| 中文 |", "| Chinese |", "header"),
    ("| 内核 |", "|  |", "empty 中文"),
    ("| the core of an OS |", "|  |", "empty meaning"),
    ("| 00 |", "|  |", "empty notebooks"),
    ("| 00 |", "| 0 |", "must be 'NN'"),
    ("| 00 |", "| 00 (soon) |", "must be 'NN'"),
    ("| 00 |", "| 00, 00 |", "named twice"),
    ("the core of an OS", "the core | of an OS", "expected 4 cells"),
    ("| ring -1 / hypervisor mode |", "| Kernel |", "listed twice"),
])
def test_parse_glossary_rejects_broken_ones(old, new, message):
    broken = GOOD_GLOSSARY.replace(old, new, 1)
    assert broken != GOOD_GLOSSARY
    with pytest.raises(DocFormatError, match=message):
        parse_glossary(broken)


def test_glossary_problems_catch_false_and_stale_references():
    entries = parse_syllabus(GOOD_SYLLABUS)
    rows = parse_glossary(GOOD_GLOSSARY)
    texts = {"00": "The kernel runs in ring 0."}
    assert glossary_problems(rows, entries, texts, {"ring -1"}) == []
    # the term is not in the notebook it names
    assert any("contains none" in p
               for p in glossary_problems(rows, entries, {"00": "kernel_sim only"}, {"ring -1"}))
    # a row with planned notebooks only must be a known gap
    assert any("no existing notebook" in p for p in glossary_problems(rows, entries, texts, set()))
    # a gap that a notebook has closed must leave the allow-list
    closed = {"00": "The kernel; the VMM's mode is called ring −1."}
    assert any("known gap" in p and "use it now" in p
               for p in glossary_problems(rows, entries, closed, {"ring -1"}))
    # notebook 01 exists now: '(planned)' is stale
    landed = dict(texts, **{"01": "ring -1"})
    assert any("drop '(planned)'" in p
               for p in glossary_problems(rows, entries, landed, {"ring -1"}))
    # a notebook that is not in the syllabus, and one that does not exist
    bad = parse_glossary(GOOD_GLOSSARY.replace("| 00 |", "| 00, 07 |")
                         .replace("01 (planned)", "01"))
    problems = glossary_problems(bad, entries, texts, {"ring -1"})
    assert any("syllabus lacks" in p for p in problems)
    assert any("does not exist" in p for p in problems)
    assert any("not a glossary term" in p
               for p in glossary_problems(rows, entries, texts, {"ring -1", "nonsense"}))


def test_missing_seed_terms_are_reported():
    rows = parse_glossary(GOOD_GLOSSARY)
    assert missing_seed_terms(rows, ("内核", "Ring -1", "KERNEL")) == []
    assert missing_seed_terms(rows, ("内核", "容器")) == ["容器"]


@pytest.mark.parametrize("text, term, found", [
    ("The kernel runs", "kernel", True),
    ("import kernel_sim", "kernel", False),
    ("two kernels", "kernel", True),
    ("runs on bare-metal", "bare metal", True),
    ("a *type 1*, \"bare\nmetal\" VMM", "type-1", True),
    ("rings 1 and 2", "ring 2", False),
    ("in ring 1 of x86", "ring -1", False),
    ("informally ring −1", "ring -1", True),
    ("the hosted VMM", "host", False),
    ("> computing\n> power", "computing power", True),
    ("虚拟机\n监视器", "虚拟机监视器", True),
    ("虚拟机", "虚拟机监视器", False),
    ("Host 模型", "Host模型", True),
    ("I/O ports", "I/O device", False),
])
def test_contains_term(text, term, found):
    assert contains_term(text, term) is found


def test_guide_problems_catch_made_up_commands_and_files(tmp_path):
    root = tmp_path
    (root / "course").mkdir()
    (root / "course" / "build.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.optional-dependencies]\ninstructor = ["nbgrader>=0.9"]\n')
    good = ("Run `make lab`, `python -m kernel_sim warmup`, `python -m course.build --check`, "
            "`python -m pip install -e '.[instructor]'`, `nbgrader autograde ps1`; "
            "see `course/build.py`.")
    assert guide_problems(good, root, {"warmup", "run"}, {"lab"}) == []
    prose = "Make everything readable; nbgrader works here."
    assert guide_problems(prose, root, set(), set()) == []
    bad = ("`make notebooks`, `python -m kernel_sim frobnicate`, `python -m course.make`, "
           "`python -m nosuchtool`, `nbgrader assign ps1`, `pip install -e '.[teacher]'`, "
           "`course/nbgrader_config.py`")
    problems = guide_problems(bad, root, {"warmup", "run"}, {"lab"})
    for needle in ("make notebooks", "frobnicate", "course.make", "nosuchtool",
                   "nbgrader assign", "[teacher]", "course/nbgrader_config.py"):
        assert any(needle in p for p in problems), needle


def test_nbgrader_command_list_is_real():
    """The list above is nbgrader's own (checked when nbgrader is installed)."""
    app = pytest.importorskip("nbgrader.apps.nbgraderapp")
    assert NBGRADER_COMMANDS <= set(app.NbGraderApp.subcommands)


def test_make_targets_reads_rules_not_variables():
    text = "PY := python\nX ?= 1\nlab: stamp\n\t$(PY) -m x\n.PHONY: lab test\nfoo bar: baz\n"
    assert make_targets(text) == {"lab", ".PHONY", "foo", "bar"}
