# Two commands on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test check bench clean venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# Lint and types first (seconds), then the suite.
check: $(STAMP)
	$(PY) -m ruff check queueserver pipeline compute tests benchmarks examples
	$(PY) -m mypy

test: check
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/queue_bulk.py
	$(PY) benchmarks/queue_small.py
	$(PY) benchmarks/cluster_forwarding.py
	$(PY) benchmarks/readers.py
	$(PY) benchmarks/data_api.py
	$(PY) benchmarks/trainer.py
	$(PY) benchmarks/metrics_cost.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache benchmarks/data
