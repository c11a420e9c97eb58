# The two commands of the README: `make demo` (the main job) and `make test` (the suite).
# Both create and fill .venv/ on first use; later runs skip what is installed.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-slow install

install:
	@scripts/install.sh

demo: install
	@$(VENV)/bin/spigot demo

test: install
	@$(PY) -m pytest

test-slow: install
	@$(PY) -m pytest -m slow
