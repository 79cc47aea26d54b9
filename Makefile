# The README's commands. Each target sets up .venv on its own, so either works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint lock install install-dev report default-model pair-model best-model

# make run needs the package with its training extra; make test also the dev extras (pytest, ruff, ...).
# Every version, transitive ones included, comes from the lock file (make lock writes it).
LOCK := requirements/lock.txt
$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[train]'
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[train,dev]'
	touch $@

install: $(BIN)/.installed
install-dev: $(BIN)/.installed-dev

## make run: set up, then train and evaluate the seed CNN (python mnist_cnn.py)
run: install
	$(BIN)/python mnist_cnn.py

## make lint: ruff's linter and formatter check, hadolint on the Dockerfile
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

## make lock: pin every dependency, transitive ones included, for Python 3.11-3.13 on every platform
lock: install-dev
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 --no-header \
		--quiet -o $(LOCK)

## make test: set up with the dev extras, lint, run the tests
test: lint
	$(BIN)/python -m pytest

## make report: score the shipped models, write docs/results.md and the README's results table
report: install
	$(BIN)/digits benchmark --report

## make default-model: retrain the model shipped in src/digits/default_model (serve, predict): strangers'
## hands and "not a digit"; its non-digit examples need Fashion-MNIST (apt-get install
## dataset-fashion-mnist); about 30 minutes here. Training calibrates it on validation.
default-model: install
	$(BIN)/digits train --model deep-cnn --epochs 16 --augment handwriting --negatives 30000 --ema 0.999 \
		--out runs/default-model
	$(BIN)/digits export runs/default-model --format onnx
	cp runs/default-model/model.keras runs/default-model/model.onnx runs/default-model/metrics.json \
		runs/default-model/config.json runs/default-model/calibration.json src/digits/default_model/

## make pair-model: retrain the model that reads two touching digits of a number whole, shipped beside
## the served model; its non-digit examples need Fashion-MNIST too; 20-30 minutes here.
pair-model: install
	$(BIN)/digits train-pairs --out runs/pair-model
	cp runs/pair-model/pair_model.onnx runs/pair-model/pair_metrics.json src/digits/default_model/

## make best-model: retrain the best single model kept in models/$(BEST_MODEL) (20-75 minutes, by host)
# Named once: the folder changes whenever validation picks another run.
BEST_MODEL := deep-cnn-ema-e40-seed3
best-model: install
	$(BIN)/digits train --model deep-cnn --ema 0.999 --epochs 40 --seed 3 --out runs/$(BEST_MODEL)
	mkdir -p models/$(BEST_MODEL)
	$(BIN)/digits calibrate runs/$(BEST_MODEL)
	$(BIN)/digits export runs/$(BEST_MODEL) --format onnx
	cp runs/$(BEST_MODEL)/model.keras runs/$(BEST_MODEL)/model.onnx runs/$(BEST_MODEL)/metrics.json \
		runs/$(BEST_MODEL)/config.json runs/$(BEST_MODEL)/calibration.json models/$(BEST_MODEL)/
