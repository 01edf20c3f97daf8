# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo test check fix bench clean

demo:
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet .
	.venv/bin/python examples/quickstart.py

test:
	$(PYTHON) -m venv .venv-dev
	.venv-dev/bin/python -m pip install --quiet --upgrade pip
	.venv-dev/bin/python -m pip install --quiet -e '.[dev]'
	PATH="$(CURDIR)/.venv-dev/bin:$$PATH" scripts/check

check:
	scripts/check

fix:
	scripts/fix

bench:
	.venv-dev/bin/python -m benchmarks

clean:
	rm -rf .venv .venv-dev .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
