# The two set-up commands of the README, and a few conveniences.
#   make demo   - create .venv, install cardscore, run the end-to-end demo on embedded defaults
#   make test   - create .venv the same way, fetch the JVM jars (make jars), run the whole test suite
#                 (make test-fast: the fast tier)
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install jars demo test test-fast lint bench clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "cardscore needs Python 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# JVM artifacts from Maven Central (deploy/jvm/*/pom.xml): the Apache Kafka broker and the Delta
# jars for JVM Spark, copied into deploy/jvm/lib/{kafka,delta}. A second run is a no-op.
JARS_STAMP := deploy/jvm/lib/.fetched
MVN_COPY := dependency:copy-dependencies -B -q -DincludeScope=runtime

$(JARS_STAMP): deploy/jvm/kafka/pom.xml deploy/jvm/delta/pom.xml
	@command -v java >/dev/null 2>&1 || { echo "make jars: java not found; install a Java 17 JDK (Debian: apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null 2>&1 || { echo "make jars: mvn not found; install Apache Maven 3.8+ (Debian: apt-get install maven)" >&2; exit 1; }
	rm -rf deploy/jvm/lib
	mvn -f deploy/jvm/kafka/pom.xml $(MVN_COPY) -DoutputDirectory=$(CURDIR)/deploy/jvm/lib/kafka
	mvn -f deploy/jvm/delta/pom.xml $(MVN_COPY) -DincludeGroupIds=io.delta -DoutputDirectory=$(CURDIR)/deploy/jvm/lib/delta
	touch $(JARS_STAMP)

jars: $(JARS_STAMP)

# spark-submit needs the venv's bin on PATH (else "Could not find valid SPARK_HOME").
demo: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/cardscore demo

# The Kafka tests (tests/kafka) run a real Apache Kafka from the jars.
test: $(STAMP) $(JARS_STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/pytest

# The fast tier: tests that need no Spark engine, broker or started service.
test-fast: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/pytest -m "not engine" -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) $(JARS_STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cardscore .pytest_cache .ruff_cache
