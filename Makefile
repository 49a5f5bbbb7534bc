# Two entry points: `make demo` (the main job on the bundled sample) and `make test` (the whole suite).
# torch is installed first and pinned: these machines hold its CPU wheel, and letting pip choose torch
# pulls GBs of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
EXTRAS ?= ops,train,ray,test
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
OUT ?= mmat-1m

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mmat generate --config configs/demo.yaml --out $(OUT)
	$(BIN)/mmat show $(OUT) --config orr --n 1

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/operators.py
	$(BIN)/python benchmarks/teacher_throughput.py
	$(BIN)/python benchmarks/crash_resume.py
	$(BIN)/python benchmarks/engine_scaling.py
	$(BIN)/python benchmarks/integration.py

clean:
	rm -rf $(OUT) .mmat-work
