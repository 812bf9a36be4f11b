# kcrash: two set-up commands on a fresh Debian 12 machine (as root): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
KCRASH := $(VENV)/bin/kcrash
DEMO_DIR ?= demo-out
PYTEST_ARGS ?=
# Two workers (the CI machine has 2 cores); tests of one file stay on one worker. The lab's cache locks
# make concurrent kernel preparation and crash production safe.
PYTEST_PARALLEL ?= -n auto --dist loadfile

.PHONY: demo test fuzz lint typecheck layers unit corpus-score bootstrap clean lock

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@scripts/demo.sh "$(DEMO_DIR)"

test: bootstrap
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# Every property test with 20 fresh random seeds (FUZZ_SEEDS=N for more), at most 60 s a test.
fuzz: bootstrap
	@scripts/fuzz.sh

unit: bootstrap
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

corpus-score: bootstrap
	$(KCRASH) oops score ../shared/corpus

# Re-resolve requirements.lock; `make lock UPGRADE=hypothesis` bumps one package, UPGRADE=--all every one.
lock:
	@scripts/lock.sh $(UPGRADE)

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_DIR)
