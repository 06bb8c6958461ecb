# Two commands for a newcomer:  `make demo`  and  `make test`.
# Both create .venv and install the project (with the dev extra) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test matrix lint bench soak screenshots clean

# One line per step, then pip's own progress (a line per package, download bars): the first
# install fetches CrewAI, ChromaDB and the test tools and takes a minute or two.
$(STAMP): pyproject.toml
	@echo "auren: [1/3] virtual environment $(VENV)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "auren: [2/3] upgrading pip"
	@$(BIN)/python -m pip install -q --upgrade pip
	@echo "auren: [3/3] installing auren and its dev extras (first time: a minute or two)"
	@$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)
	@echo "auren: installed into $(VENV)"

demo: $(STAMP)
	$(BIN)/auren demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The integration tests against older CrewAI releases (the newest is `make test`'s), each in a
# cached virtual environment under ${AUREN_MATRIX_CACHE:-~/.cache/auren/matrix}: see .ci/matrix.
matrix:
	$(PY) .ci/matrix

lint: $(STAMP)
	$(BIN)/ruff check auren_core auren_tui tests bench
	$(BIN)/mypy

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# demo x10 + persist + serve-ws with 200 clients + top in a pty, 10 minutes (SOAK="--duration 2m")
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
