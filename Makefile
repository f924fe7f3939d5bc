# s3sink developer commands. `make test` is the README's test command: it creates the
# virtualenv if missing, installs the locked dependencies, and runs lint, types and the whole
# suite (unit and integration tests against a real Kafka broker and real S3 endpoints).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.s3sink-installed

.PHONY: demo test unit lint types install lock bench bench-quick docs

# The main job on the embedded default: local Kafka + S3 endpoint, sample data, catch-up,
# verify, and a DuckDB query over the output. `s3sink local down` stops the stack.
demo: $(STAMP)
	$(BIN)/s3sink demo

test: lint types
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

install: $(STAMP)

# The benchmark (bench/README.md): s3sink catchup against the consume-only ceiling, with its
# own broker and MinIO; bench-quick is the CI-sized run (under a minute). BENCH_ARGS passes
# options, e.g. BENCH_ARGS="--backends local --records 500000".
bench: $(STAMP)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python bench/bench.py --quick $(BENCH_ARGS)

# Regenerate the README's configuration reference from the config model.
docs: $(STAMP)
	$(BIN)/python -c 'import pathlib, re; from s3sink.config import docs_markdown as d; \
	p = pathlib.Path("README.md"); \
	p.write_text(re.sub(r"(<!-- config-reference:start -->\n).*(<!-- config-reference:end -->)", \
	lambda m: m.group(1) + d() + m.group(2), p.read_text(), flags=re.S))'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "s3sink needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# The lock applies to the isolated build environment too (pyproject's [build-system] requires:
# setuptools, wheel): PIP_BUILD_CONSTRAINT for pip 26.2+ (where constraints no longer reach
# the build environment), PIP_CONSTRAINT for older pips (whose build environment inherits it).
LOCK_ENV := PIP_CONSTRAINT=$(CURDIR)/constraints.txt PIP_BUILD_CONSTRAINT=$(CURDIR)/constraints.txt

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(LOCK_ENV) $(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# Re-resolve the newest versions pyproject.toml allows, in a scratch venv, into constraints.txt.
# The build requirements ([build-system] requires) are resolved into it as well.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	.lock-venv/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' > .lock-venv/build-requires.txt
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade \
		-r .lock-venv/build-requires.txt
	{ echo "# Locked dependencies of s3sink[dev] and of its build; regenerate with \`make lock\`."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable --disable-pip-version-check \
		| grep -iv '^\(s3sink\|pip\)[=@ ]'; } > constraints.txt
	rm -rf .lock-venv
