# curate: make install | test | demo | bench | lint
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch and torchvision that import together on x86_64 CPU machines (and run on GPUs too)
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

export RAY_AUTH_MODE ?= disabled
export RAY_DATA_LOG_LEVEL ?= ERROR
export RAY_BACKEND_LOG_LEVEL ?= fatal
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_VERBOSITY ?= error
export TOKENIZERS_PARALLELISM ?= false

DEMO := .demo

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(TORCH)
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

demo: install $(DEMO)/sample/_corpus.json $(DEMO)/models/tiny-vlm/config.json $(DEMO)/models/tiny-nsfw-head.pth
	$(BIN)/curate run jobs/demo.yaml --fresh

$(DEMO)/sample/_corpus.json: | $(STAMP)
	$(BIN)/curate sample $(DEMO)/sample --n 12 --seed 0

$(DEMO)/models/tiny-vlm/config.json $(DEMO)/models/tiny-nsfw-head.pth: | $(STAMP)
	$(BIN)/curate tiny-models $(DEMO)/models

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check curate captioners filters schemas tests bench

clean:
	rm -rf $(DEMO) bench/out .pytest_cache
