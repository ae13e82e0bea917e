# Two commands on a fresh machine: `make demo` and `make test`. Both build on `make setup`,
# which creates .venv at the repo root (if missing) with every extra installed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfsep-edge-installed

.PHONY: setup demo test lint test-arm bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m tfsep_edge.demo

test: setup
	$(PY) -m ruff check tfsep_edge tests benchmarks
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check tfsep_edge tests benchmarks

clean:
	rm -rf build *.egg-info demo-run
