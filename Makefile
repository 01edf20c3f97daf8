# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo dev-env test check fix bench clean

demo:
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet .
	.venv/bin/python examples/quickstart.py

# The dev virtualenv: rivers (editable) with the test tools. `.ci/run` makes it first
# so the Kubernetes testbed's pods run `python -m rivers.worker` in it.
dev-env:
	$(PYTHON) -m venv .venv-dev
	.venv-dev/bin/python -m pip install --quiet --upgrade pip
	.venv-dev/bin/python -m pip install --quiet -e '.[dev]'

test: dev-env
	PATH="$(CURDIR)/.venv-dev/bin:$$PATH" scripts/check

check:
	scripts/check

fix:
	scripts/fix

bench:
	.venv-dev/bin/python -m benchmarks

clean:
	rm -rf .venv .venv-dev .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
