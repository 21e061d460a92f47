# Every target creates .venv and installs the project (with its dev extras) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/replay

.PHONY: install replay test lint format bench clean validate deploy

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "logfan needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

replay: $(STAMP)
	$(BIN)/logfan replay sample_logs --rules sample_logs/rules.yaml --out $(OUT) --batch-size 8

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint validate
	$(BIN)/pytest

# cfn-lint applies the SAM transform itself, then checks the resulting CloudFormation.
validate: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml

# Not run in CI. Needs the SAM CLI and AWS credentials; `make deploy GUIDED=1` the first time.
STACK ?= logfan
PARAMS ?=
GUIDED ?=
deploy: $(STAMP) validate
	@command -v sam >/dev/null || { echo "make deploy needs the AWS SAM CLI (sam) on PATH"; exit 1; }
	$(BIN)/python infra/bundle.py build/lambda
	sam build --template-file infra/template.yaml --build-dir build/sam
	sam deploy --template-file build/sam/template.yaml --stack-name $(STACK) --capabilities CAPABILITY_IAM \
		--resolve-s3 --no-fail-on-empty-changeset $(if $(GUIDED),--guided) \
		$(if $(PARAMS),--parameter-overrides $(PARAMS))

# 1-3 minutes: prints the table and writes tests/bench/results.json (see README, Performance).
bench: $(STAMP)
	$(BIN)/logfan bench

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
