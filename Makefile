# Quick start:  make demo   (example site on http://127.0.0.1:8000, SQLite, jobs inline, demo data)
#               make test   (lint, migrations check and the whole test suite)
#
# Variables: PYTHON_VERSIONS (best first), VENV, DJANGO_SPEC (e.g. "Django>=6.1,<6.2"),
# and for the tests CRM_TEST_DB=postgres, CRM_REQUIRE_SERVICES=1 (see docs/contributing.md).

PYTHON_VERSIONS ?= 3.13 3.12 3.11
VENV ?= .venv
DJANGO_SPEC ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
MANAGE := cd example_site && ../$(BIN)/python manage.py

.PHONY: demo test check lint format install clean

$(BIN)/python:
	@PY=$$(.ci/find_python.sh $(PYTHON_VERSIONS)) && echo "Creating $(VENV) with $$PY" && "$$PY" -m venv $(VENV)

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" $(if $(DJANGO_SPEC),"$(DJANGO_SPEC)")
	@touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(MANAGE) migrate --noinput
	$(MANAGE) load_crm_demo
	$(MANAGE) runserver 127.0.0.1:8000

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: lint
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings
	$(MANAGE) makemigrations --check --dry-run

# pytest's exit code 5 ("no tests ran") is a failure here.
test: check
	@$(BIN)/python -c "import sys, django; print('Python', sys.version.split()[0], '· Django', django.get_version())"
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info example_site/db.sqlite3
