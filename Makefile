# Two commands on a fresh machine: `make demo` and `make test`. Both build on `make setup`,
# which creates .venv at the repo root (if missing) with every extra installed, at the exact
# versions in constraints.txt (pyproject.toml holds ranges).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfsep-edge-installed
PIP := $(PY) -m pip install -q -c constraints.txt
LINTED := tfsep_edge tests benchmarks

.PHONY: setup demo test test-all lint test-arm bench clean

setup: $(STAMP)

# torch first, from the constraints (the CPU build): the package's range would let pip reach for
# a multi-GB CUDA build on a machine without torch.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch
	$(PIP) -e '.[torch,tflite,micro,fast,listen,dev]'
	touch $(STAMP)

demo: setup
	$(PY) -m tfsep_edge.demo

# The fast tier, after every change: lint, then every test not marked slow (README: what each tier
# checks), a test file per worker on two cores.
test: lint
	$(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

# Everything, slow tests included: what CI runs.
test-all: lint
	$(PY) -m pytest -q --durations=20

lint: setup
	$(PY) -m ruff check $(LINTED)
	$(PY) -m ruff format --check $(LINTED)

# The light runtime on aarch64 under qemu (Pi 4/Pi 5 CPU models): same labels and logits as x86.
# Needs root and apt the first time (qemu-user-static, debootstrap); cached under .cache/arm64.
test-arm: setup
	bash deploy/arm-emulation/run.sh

# The standard latency comparison on this machine -> benchmarks/results/ (run it on a quiet CPU).
bench: setup
	$(PY) benchmarks/run_standard.py

clean:
	rm -rf build *.egg-info demo-run
