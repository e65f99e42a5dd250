# Perisai: the two commands a new machine needs are `make run` and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup run test up down status lint asyncapi contract clean

## setup: create the virtualenv and install the project with its pinned dependencies
setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Perisai needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create a virtualenv: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

## run: start Kafka, PostgreSQL, the services and stand-ins; feed the 9,038-worker cohort
run: setup
	$(BIN)/python -m devtools.run $(ARGS)

## test: the whole test suite against real Kafka and PostgreSQL (started if needed)
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

up: setup
	$(BIN)/python -m infra up

down: setup
	$(BIN)/python -m infra down

status: setup
	$(BIN)/python -m infra status

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services devtools infra

## asyncapi: regenerate the AsyncAPI documents in docs/asyncapi from the code
asyncapi: setup
	$(BIN)/python -m shared.asyncapi

## contract: record the event schemas in docs/contract, refusing a breaking change
contract: setup
	$(BIN)/python -m shared.contract

clean: down
	rm -rf .infra $(VENV)
