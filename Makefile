# One command for the demo, one for the tests; each sets up what it needs.
#   make demo   server + seed data, card emulator with demo cards, the till app (Xvfb if headless)
#               (the demo lives in tests/demo/, not in the package; options: make demo ARGS=--script)
#   make test   lint, type check (mypy) + the whole test suite (what .ci/run calls)
#   make sim    the deterministic simulation's long run (docs/simulation.md; CI runs a few seeds)
#   make screenshots  docs/screenshots/: every main page of the office, portal and public pages
#   make i18n   after changing texts: extract them into hcard/locale/hcard.pot and update the
#               German and English catalogues; then translate the new entries (README)
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# mypy cannot follow pyproject.toml's package-dir mapping (the editable install's import hook):
# it finds hcard.server, hcard.terminal and hcard.provisioning through these links ([tool.mypy]).
# Folder links, made once; order-only below, so a folder's new files rebuild nothing.
MYPY_LINKS := $(addprefix build/mypy/hcard/,server terminal provisioning)

.PHONY: demo test system-packages lint bench i18n screenshots sim

# system-packages first: pip builds pyscard (the pcsc extra) against libpcsclite-dev and swig
$(STAMP): pyproject.toml | system-packages $(MYPY_LINKS)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -U pip "setuptools>=75"
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

$(MYPY_LINKS):
	mkdir -p $(@D)
	ln -sfn ../../../$(@F) $@

system-packages:
	@bash tests/setup/system-packages.sh

test: system-packages $(STAMP) | $(MYPY_LINKS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -n 3 --dist loadfile

demo: system-packages $(STAMP)
	PYTHONPATH=tests $(VENV)/bin/python -m demo $(ARGS)

# the README's pictures: every main page at 1280x800 and 390x844 (Chromium, demo data)
screenshots: system-packages $(STAMP)
	PYTHONPATH=tests $(VENV)/bin/python -m demo.screenshots $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the deterministic simulation's long run (docs/simulation.md): 10,000 seeds x 200 operations on
# every core, a JSON summary on the last line; e.g. make sim ARGS="--seeds 500 --first-seed 10000"
sim: $(STAMP)
	$(VENV)/bin/python -m tests.sim --seeds 10000 --ops 200 $(ARGS)

# modules the benches share, not benches themselves
BENCH_MODULES := bench/year.py bench/verify_floor.py

bench: $(STAMP)
	for b in $(filter-out $(BENCH_MODULES),$(wildcard bench/*.py)); do $(VENV)/bin/python $$b || exit 1; done

# One catalogue for every text (hcard/i18n.py): extract with babel.cfg from the repository's top,
# then carry the new and changed msgids into de/ and en/ (untranslated: tests/test_core_i18n.py
# fails until each has its German and English). The .mo files are compiled at first use.
i18n: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg --no-location --add-comments=Translators: \
		--project hattingen-card --version 0.1 -o hcard/locale/hcard.pot .
	$(VENV)/bin/pybabel update -i hcard/locale/hcard.pot -d hcard/locale -D hcard \
		--no-fuzzy-matching --ignore-obsolete
