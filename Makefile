# Every target bootstraps .venv from the committed lock, idempotently: the stamp is rebuilt
# only when pyproject.toml or a lock changes, so repeated `make test` installs nothing.
# pip installs the pinned installer (uv, requirements/bootstrap.lock); uv then makes the venv
# exactly the lock (requirements/dev.lock, hashes required) and adds the project, editable.
# The packages are compiled to bytecode once, at install: where bytecode is not written at
# import (PYTHONDONTWRITEBYTECODE, read-only installs) every process, and so every sweep job,
# would otherwise compile them again (1.5 s of a 2.2 s start-up, measured).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := requirements/dev.lock
BOOT   := requirements/bootstrap.lock
DEMO_DB := datasets/demo.duckdb
# Flags shared by `make lock` and `make test-latest`: one resolution for every platform
# and every Python the project supports.
COMPILE := pip compile --universal --python-version 3.11 --generate-hashes --quiet

.PHONY: demo test test-slow bench lint clean browser lock test-latest

$(STAMP): pyproject.toml $(LOCK) $(BOOT)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/uv --version 2>/dev/null | grep -q "$$(sed -n 's/^uv==\([^ ]*\).*/\1/p' $(BOOT))" || \
	  $(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(BOOT)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes --compile-bytecode $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

$(DEMO_DB): | $(STAMP)
	$(BIN)/volreplay synth --db $(DEMO_DB) --scale small --hours 2 --seed 7

demo: $(STAMP) $(DEMO_DB)
	$(BIN)/volreplay demo --db $(DEMO_DB)

# The report's browser test needs Chromium: install Debian's where we can (root with apt-get,
# as in CI); elsewhere the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test"; \
	    apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	      || echo "chromium install failed: the browser test will skip"; \
	  else echo "chromium missing and not root: the browser test will skip"; fi; }

# The suite runs on JOBS processes (pytest-xdist), each test file whole on one of them (its
# module fixtures built once). On 2 cores this halves the wall time; on a fresh clone both
# processes also compile the numba kernels at once instead of one after the other.
JOBS ?= 2
SUITE := -q -n $(JOBS) --dist loadfile -m "not slow"

test: $(STAMP) browser
	$(BIN)/python -m pytest $(SUITE)

# The long cases (Monte Carlo theory checks of the hedgers, the large synthetic store): minutes
# each, so not in `make test`; run them before a change to strategies or synth lands.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/volreplay bench

lint: $(STAMP)
	$(BIN)/ruff check replay calibration strategies hydra_plugins tests bench

# Re-resolve both locks to the newest versions pyproject.toml allows. Commit the result on its
# own, and only after `make test` (and `make test-latest`) pass on it.
lock: $(STAMP)
	$(BIN)/uv $(COMPILE) --upgrade requirements/bootstrap.in -o $(BOOT)
	$(BIN)/uv $(COMPILE) --upgrade pyproject.toml requirements/tools.in --extra dev -o $(LOCK)

# What a `pip install volreplay[dev]` user gets today: a separate venv resolved from the ranges
# alone (no lock), then the whole suite. Not part of CI.
test-latest: $(STAMP)
	rm -rf .venv-latest
	$(BIN)/uv venv --quiet --python $(BIN)/python .venv-latest
	$(BIN)/uv pip install --quiet --python .venv-latest/bin/python --upgrade --no-cache -e '.[dev]'
	.venv-latest/bin/python -m pip list 2>/dev/null | grep -iE '^(numpy|scipy|numba|duckdb|pandas|pyarrow) ' || \
	  $(BIN)/uv pip list --python .venv-latest/bin/python | grep -iE '^(numpy|scipy|numba|duckdb|pandas|pyarrow) '
	.venv-latest/bin/python -m pytest $(SUITE) -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-latest $(DEMO_DB) .pytest_cache
