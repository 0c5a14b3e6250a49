# Two commands do everything on a fresh Debian machine with Python >= 3.11:
#   make demo   set up, then build the demo model pair, record, index and open the compare window
#   make test   set up, then run the whole test suite
# Set-up is a stamp file: a second run skips it when pyproject.toml and this Makefile are unchanged.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.neurobrowse-installed
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: setup test lint demo bench package mutate clean-venv

setup: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "neurobrowse needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile packaging/system-packages.sh | $(PY)
	bash packaging/system-packages.sh
	@# torch pinned first: an unpinned torch would pull GBs of CUDA wheels on a CPU-only machine
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[model,distributed,test,hf]"
	@touch $(STAMP)

# two workers (pytest-xdist), each test file whole on one worker (module fixtures built once); TEST_WORKERS=0: serial
TEST_WORKERS ?= 2
test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) tests

# ruff over the whole tree (rules in pyproject.toml)
lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(VENV)/bin/neurobrowse demo

bench: setup
	$(PY) benchmarks/run_all.py

# Mutation testing (mutmut, the `mutation` extra) over MUTATE_PATHS with the tests MUTATE_TESTS; prints the
# kill rate and writes benchmarks/out/mutation.json. Slow: narrow both on a small machine, e.g.
#   make mutate MUTATE_PATHS=store/format/chunkio.py MUTATE_TESTS=tests/test_store_writer.py
MUTATE_PATHS ?= store/ neurobrowse/study/
MUTATE_TESTS ?= tests/
mutate: setup
	$(PIP) install -e ".[mutation]"
	$(PY) tools/mutate.py --paths $(MUTATE_PATHS) --tests $(MUTATE_TESTS)

# The desktop app as a PyInstaller one-folder build in dist/neurobrowse/, smoke-tested headless on a
# tiny real store (built by the demo pipeline's tiny preset under artifacts/package-smoke).
package: setup
	$(PIP) install "pyinstaller>=6.5"
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/neurobrowse.spec
	$(VENV)/bin/neurobrowse demo --preset tiny --workdir artifacts/package-smoke --no-window --quiet
	QT_QPA_PLATFORM=offscreen dist/neurobrowse/neurobrowse --smoke-test artifacts/package-smoke/stores/solu_ln

clean-venv:
	rm -rf $(VENV)
