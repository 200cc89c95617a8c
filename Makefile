# Quick start: `make demo` (sets up .venv, runs the whole pipeline on the embedded synthetic data)
# and `make test` (sets up .venv, runs the test suite). Both reuse the environment once made.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast test-device format format-check setup clean

$(BIN)/.fertrt-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[desktop,train,serve,dev]"
	touch $@

setup: $(BIN)/.fertrt-installed

demo: setup
	$(BIN)/fertrt demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The device half on JetPack 5.1 / 6.x Pythons (pyenv's 3.8 / 3.10; venvs cached in ~/.cache/fertrt/device-envs)
# and the aarch64 resolution of each JetPack's documented install. Part of `make test` too.
test-device: setup
	$(BIN)/python -m pytest -q -m device_envs tests/test_device_envs.py $(PYTEST_ARGS)

# One code style, 120 columns (ruff's formatter; configured in pyproject.toml). CI fails on unformatted files
# and on pyflakes findings (undefined or unused names).
format: setup
	$(BIN)/ruff format .

format-check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
