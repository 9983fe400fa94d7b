# SPARROW reproduction kit. Quick start: `make reproduce` then `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= mini
SEED ?= 0
export SPARROW_HOME ?= $(CURDIR)/artifacts
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# CPU install rules (docs/runtime.md): the constraint must reach sam2's isolated build, hence the env variable.
export PIP_CONSTRAINT := $(CURDIR)/constraints-cpu.txt
export SAM2_BUILD_CUDA := 0

NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup reproduce lint test test-mini regen-expected pretrain-mini promote-results clean-results strip-notebooks bench help

help:
	@echo "make reproduce   # set up .venv if missing, run every numbered notebook under PROFILE=$(PROFILE)"
	@echo "make lint        # ruff: lint rules and formatting (pyproject.toml [tool.ruff]); changes nothing"
	@echo "make test        # set up .venv if missing, run the test suite (notebooks under smoke)"
	@echo "make test-mini   # every slow test: the notebooks under mini vs reproductions/expected/mini, the committed grounding retrained, ..."
	@echo "make regen-expected PROFILE=smoke|mini   # rewrite reproductions/expected/<profile>/ from a fresh run"
	@echo "make promote-results PROFILE=mini        # copy the last reproduce's results to reproductions/results/<profile>/"
	@echo "make pretrain-mini  # retrain the committed mini SAM2 and dense grounding (reproductions/weights/mini-*)"
	@echo "make bench       # the scripts in benchmarks/"

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 torchvision==0.28.0
	$(PY) -m pip install -q -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name sparrow --display-name "sparrow (venv)" >/dev/null
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(PY) -m sparrow.cli reproduce --profile $(PROFILE) --seed $(SEED)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup
	$(PY) -m pytest -n 2 -q

test-mini: setup
	$(PY) -m pytest -q -m slow

regen-expected: setup
	$(PY) -m sparrow.cli regen-expected --profile $(PROFILE) --seed $(SEED)

# The mini dense grounding (about 37 CPU minutes, one thread, bit-reproducible), committed under
# reproductions/weights/mini-grounding; make reproduce uses that copy while its fingerprint matches.
pretrain-mini: setup
	$(PY) -m sparrow.cli pretrain --profile mini --commit

promote-results: setup
	$(PY) -m sparrow.cli promote-results --profile $(PROFILE)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

strip-notebooks: setup
	$(PY) -m sparrow.notebook_tools strip notebooks/*.ipynb
