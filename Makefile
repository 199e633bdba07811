# One-command entry points. Everything installs itself into .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORPUS_SRC := data/synth
CORPUS := data/corpus
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup data train test lint format bench clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The embedded corpus in the IAM-OnDB layout, then its shards (each step skipped when done).
data: $(STAMP)
	@test -f $(CORPUS_SRC)/.complete || $(PY) -m data_prep synth $(CORPUS_SRC)
	@test -f $(CORPUS)/dataset.json || $(PY) -m data_prep iam-ondb $(CORPUS_SRC) $(CORPUS)

# README's first command: data, then the demo model (resumes a killed run; a finished run only
# redraws its pictures).
train: data
	$(PY) train.py --preset demo --data $(CORPUS) --logdir runs/demo --resume

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
