# Everyday targets. `make test` is what CI runs (through .ci/run).
PYTHON ?= python3

.PHONY: install run test lint bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

run:
	processor --config examples/hello/function.yaml

test:
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

bench:
	$(PYTHON) test/bench/http_bench.py
