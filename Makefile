# One command for the demo, one for the tests; each sets up what it needs.
#   make demo   server + seed data, card emulator with demo cards, the till app (Xvfb if headless)
#               (the demo lives in tests/demo/, not in the package; options: make demo ARGS=--script)
#   make test   lint + the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test system-packages lint bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -U pip "setuptools>=75"
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

system-packages:
	@bash tests/setup/system-packages.sh

test: $(STAMP) system-packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest

demo: $(STAMP) system-packages
	PYTHONPATH=tests $(VENV)/bin/python -m demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	for b in bench/*.py; do $(VENV)/bin/python $$b || exit 1; done
