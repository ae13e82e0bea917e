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
	$(PY) -m pip install -q -e '.[torch,tflite,listen,dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m tfsep_edge.demo

test: setup
	$(PY) -m ruff check tfsep_edge tests benchmarks
	$(PY) -m ruff format --check tfsep_edge tests benchmarks
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check tfsep_edge tests benchmarks
	$(PY) -m ruff format --check tfsep_edge tests benchmarks

# The light runtime on aarch64 under qemu (Pi 4/Pi 5 CPU models): same labels and logits as x86.
# Needs root and apt the first time (qemu-user-static, debootstrap); cached under .cache/arm64.
test-arm: setup
	bash deploy/arm-emulation/run.sh

# The standard latency comparison on this machine -> benchmarks/results/ (run it on a quiet CPU).
bench: setup
	$(PY) benchmarks/run_standard.py

clean:
	rm -rf build *.egg-info demo-run
