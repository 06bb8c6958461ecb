# Two commands for a newcomer:  `make demo`  and  `make test`.
# Both create .venv and install the project (with the dev extra) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test matrix lint bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
