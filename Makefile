# The two set-up commands of the README, and a few conveniences.
#   make demo   - create .venv, install cardscore, run the end-to-end demo on embedded defaults
#   make test   - create .venv the same way, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "cardscore needs Python 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# spark-submit needs the venv's bin on PATH (else "Could not find valid SPARK_HOME").
demo: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/cardscore demo

test: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cardscore .pytest_cache .ruff_cache
