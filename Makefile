# One-command entry points. Everything installs itself into .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORPUS_SRC := data/synth
CORPUS := data/corpus
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup data train test test-fast lint format bench peer clean

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

# The inner loop: every test but those marked slow (end-to-end runs, exports, subprocesses).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

bench: $(STAMP)
	-@$(MAKE) --no-print-directory peer
	$(PY) -m benchmarks

# The PyTorch reference that training throughput is compared with (../shared/peer/), in its
# own environment; torch 2.13.0 is the CPU build (other versions pull the CUDA packages).
peer: .peer/.installed
.peer/.installed:
	$(PYTHON) -m venv .peer
	.peer/bin/pip install --quiet torch==2.13.0 numpy
	touch $@

clean:
	rm -rf $(VENV) .peer build *.egg-info .pytest_cache .ruff_cache
