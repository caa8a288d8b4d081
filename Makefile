# The two commands a newcomer runs: `make demo` and `make test`. Both do all set-up first.
# The distribution's Python 3.11+ (with venv) when there is one: Debian builds it with profile-guided
# and link-time optimisation, and Renkei spends ~13% less CPU a round trip on it than on a plain
# build such as pyenv's (issue 7's note); else the first python3 on the PATH. PYTHON=… overrides.
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed
	$(BIN)/renkei broker fetch

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/renkei demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# The suite in WORKERS processes, each with a broker and a town of its own, a test file whole in one
# (its module fixtures set up once): alone, one process left the machine ~60% idle, waiting on
# brokers and services (969 s against 711 s in two, on this 2-core machine)
WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(WORKERS) --dist loadfile

clean:
	test ! -x $(BIN)/renkei || $(BIN)/renkei broker down
	rm -rf .state results
