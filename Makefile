# The two commands: `make run` and `make test`. Everything else is a helper they call.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install messages messages-update system-deps run test lint typecheck bench lock services-up services-down clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $@

# Compile the UI catalogs (pure Python, no GNU gettext needed).
messages: $(STAMP)
	@ls locale/*/LC_MESSAGES/django.po >/dev/null 2>&1 && $(VENV)/bin/pybabel -q compile -d locale -D django || true

install: $(STAMP) messages

# Re-extract UI strings into the catalogs (needs GNU gettext); then translate the new entries.
messages-update: install
	$(PY) manage.py makemessages -l de -l fr -l es -l ja --no-location \
	  --ignore '.venv/*' --ignore '.hub/*' --ignore 'tests/*' --ignore 'bench/*' --ignore 'connectors/*' \
	  --ignore 'docs/*' --ignore 'deploy/*' --ignore 'node_modules/*'

# Test-only system packages: Chromium for the browser tests, GNU gettext for the catalog check, xmlsec1
# for the SAML IdP simulator (pysaml2 signs with it; the hub itself uses the xmlsec wheel).
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v xgettext >/dev/null || missing="$$missing gettext"; \
	command -v xmlsec1 >/dev/null || missing="$$missing xmlsec1"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "please install:$$missing (browser, catalog and SAML IdP tests need them)"; exit 1; fi; \
	fi

run: install
	$(PY) manage.py serve

# Services on free ports in a throw-away directory; pytest's exit code is make's exit code.
test: install system-deps
	@export HUB_HOME=$$(mktemp -d /tmp/hub-test.XXXXXX); \
	trap '$(PY) manage.py services down --purge >/dev/null 2>&1 || true' EXIT; \
	$(PY) manage.py services up --ephemeral --free-ports && \
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: install
	$(VENV)/bin/mypy .

bench: install
	@export HUB_HOME=$$(mktemp -d /tmp/hub-bench.XXXXXX); \
	trap '$(PY) manage.py services down --purge >/dev/null 2>&1 || true' EXIT; \
	$(PY) manage.py services up --ephemeral --free-ports && \
	$(PY) bench/run.py

# Re-pin requirements.lock from pyproject.toml (run after changing dependencies).
lock:
	rm -rf /tmp/hub-lock && $(PYTHON) -m venv /tmp/hub-lock
	/tmp/hub-lock/bin/pip install --quiet '.[dev]'
	/tmp/hub-lock/bin/pip freeze --exclude-editable | grep -v '^integration-hub' | grep -v '^setuptools' > requirements.lock

services-up: install
	$(PY) manage.py services up

services-down: install
	$(PY) manage.py services down

clean:
	$(PY) manage.py services down --purge || true
	rm -rf $(VENV)
