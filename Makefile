# kernel_sim -- the two commands:
#
#   make lab    set up .venv (first time only) and open the course in JupyterLab
#   make test   set up .venv with the test tools and run every test
#
# Other targets: make notebooks, make fuzz, make bench, make clean.
#
#   make notebooks   rebuild notebooks/*.ipynb and course/solutions/*.md from the exercise
#                    masters in course/masters/ (python -m course.build; see course/README.md).
#                    Edit the masters, never notebooks/ by hand: `make test` fails when they
#                    are out of sync.
#
# Variables you may override:
#   PYTHON=python3.12   interpreter used to create .venv
#   LAB_ARGS="--port 9999 --no-browser"   passed to `python -m kernel_sim lab`
#   PYTEST_ARGS="-x -k rings"             passed to pytest

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# quiet-ish: no progress bars or "Requirement already satisfied" lines, errors still shown
PIP_QUIET := -q --progress-bar off
LAB_ARGS    ?=
PYTEST_ARGS ?=
CHROMIUM    ?= /usr/bin/chromium

# stamp files: reinstall only when pyproject.toml is newer than the last install
STAMP_LAB  := $(VENV)/.kernel_sim-installed
STAMP_TEST := $(VENV)/.kernel_sim-installed-test

.PHONY: lab test notebooks fuzz bench clean venv browser-check

lab: $(STAMP_LAB)
	@echo ">>> Warming up the JIT cache (compiles the simulator once; later starts are fast) ..."
	$(PY) -m kernel_sim warmup
	@echo ">>> Starting JupyterLab (stop it with Ctrl-C) ..."
	$(PY) -m kernel_sim lab $(LAB_ARGS)

test: $(STAMP_TEST) browser-check
	@set -e; \
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/kernel_sim-test.XXXXXX"); \
	trap 'rm -rf "$$tmp"' EXIT; \
	echo ">>> Fresh Numba cache for this run: $$tmp/numba_cache"; \
	NUMBA_CACHE_DIR="$$tmp/numba_cache" JUPYTER_PREFER_ENV_PATH=1 KERNEL_SIM_CHROMIUM="$(CHROMIUM)" \
	  KERNEL_SIM_REQUIRE_NBGRADER=1 \
	  $(PY) -m pytest tests --nbmake --nbmake-timeout=600 notebooks $(PYTEST_ARGS)

# nbformat comes with jupyterlab, so the plain install is enough for the build
notebooks: $(STAMP_LAB)
	$(PY) -m course.build

fuzz: $(STAMP_TEST)
	KERNEL_SIM_FUZZ=1 $(PY) -m pytest tests/test_differential.py $(PYTEST_ARGS)

bench: $(STAMP_LAB)
	$(PY) benchmarks/run.py

venv: $(PY)

$(PY):
	@echo ">>> Creating virtual environment $(VENV) with $(PYTHON) ..."
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_QUIET) --upgrade pip

$(STAMP_LAB): pyproject.toml | $(PY)
	@echo ">>> Installing kernel_sim and its dependencies into $(VENV) (first time: about a minute) ..."
	$(PIP) install $(PIP_QUIET) -e .
	@touch $@

# The test extras include everything `make lab` needs, so they satisfy both stamps.
$(STAMP_TEST): pyproject.toml | $(PY)
	@echo ">>> Installing kernel_sim with its test tools into $(VENV) ..."
	$(PIP) install $(PIP_QUIET) -e '.[test]'
	@touch $@ $(STAMP_LAB)

# The browser tests drive Debian's chromium through Playwright (`playwright
# install` is not needed). Install it when we can (root + apt-get), otherwise
# say why those tests will be skipped.
browser-check:
	@if [ -x "$(CHROMIUM)" ]; then \
	  :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo ">>> Installing chromium for the browser tests (apt-get, about 30 s) ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo ">>> NOTE: $(CHROMIUM) not found and not root (or no apt-get): the browser tests will be skipped."; \
	  echo "           Install it with: sudo apt-get install chromium   (or set CHROMIUM=/path/to/chromium)"; \
	fi

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .ruff_cache test-artifacts
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 \
	  | xargs -0 rm -rf
	find . -path ./$(VENV) -prune -o \( -name '*.nbi' -o -name '*.nbc' \) -type f -print0 | xargs -0 rm -f
	@echo ">>> Kept $(VENV); remove it with: rm -rf $(VENV)"
