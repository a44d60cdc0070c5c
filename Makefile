# Edge object detection: train a MobileNet-SSD, quantize it to int8 TFLite, run it on a Raspberry Pi.
# Every target installs what it needs: `.venv` is (re)built whenever a requirements file changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQUIREMENTS := $(filter-out requirements/imx500.txt,$(wildcard requirements/*.txt))

# Demo defaults (recorded in every run's run.json). `make train` and `make demo` train with exactly these.
DATA ?= data/synthetic
RUN ?= runs/demo
ALPHA ?= 0.5
SIZE ?= 224
EPOCHS ?= 4
AUGMENT ?= none
TRAIN_MINUTES ?= 13
NUM_IMAGES ?= 10000
VAL_FRACTION ?= 0.05
SEED ?= 0
TRAIN_ARGS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONPATH := $(CURDIR)

.PHONY: help setup test lint data train evaluate check-data clean
help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): $(REQUIREMENTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	@touch $@

setup: $(STAMP)  ## create .venv with everything a development machine needs

test: $(STAMP)  ## run the test suite
	$(PY) -m pytest -q tests

lint: $(STAMP)  ## ruff lint + format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

$(DATA)/ImageSets/Main/train.txt: | $(STAMP)
	$(PY) -m train.synthetic --out $(DATA) --num-images $(NUM_IMAGES) --val-fraction $(VAL_FRACTION) --seed $(SEED)

data: $(DATA)/ImageSets/Main/train.txt  ## generate the built-in synthetic dataset (Pascal VOC layout)

train: $(STAMP) data  ## train the demo detector on the synthetic dataset
	$(PY) -m train --data $(DATA) --alpha $(ALPHA) --size $(SIZE) --epochs $(EPOCHS) --seed $(SEED) \
		--augment $(AUGMENT) --max-train-minutes $(TRAIN_MINUTES) --out $(RUN) $(TRAIN_ARGS)

evaluate: $(STAMP)  ## evaluate the demo run's best checkpoint on the validation split
	$(PY) -m train.evaluate --run $(RUN) --data $(DATA)

check-data: $(STAMP)  ## list every problem in a dataset at once: make check-data DATA=PATH [FORMAT=voc|coco]
	$(PY) -m train.check_data --data $(DATA) $(if $(FORMAT),--format $(FORMAT))

clean:  ## remove generated data, runs and caches (keeps .venv)
	rm -rf data runs demo .pytest_cache

-include mk/*.mk
