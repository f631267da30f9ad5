# The two commands: `make demo` and `make test`. Both create or reuse .venv/.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: venv test test-fast demo benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[test]"
	touch $(STAMP)

test: venv
	$(PY) -m ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

test-fast: venv
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -m "not slow"

demo: venv
	$(PY) -m deepmed demo --out $(DEMO_OUT)

benchmark: venv
	$(PY) benchmarks/bench_train_infer.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
