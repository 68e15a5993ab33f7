# The two commands: `make demo` and `make test`. Both set up .venv first when it is missing or stale.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
RUNS ?= runs

.PHONY: demo test test-fast bench venv clean

$(STAMP): pyproject.toml scripts/pip-constraints.txt scripts/setup-venv.sh
	scripts/setup-venv.sh

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sparsegate demo --out $(RUNS)/demo

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/sparsegate bench --out $(RUNS)/bench

clean:
	rm -rf $(RUNS) build .pytest_cache
