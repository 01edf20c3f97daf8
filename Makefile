# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3

.PHONY: demo dev-env lock test check fix bench clean

demo:
	$(PYTHON) -m venv .venv
	.venv/bin/python -m pip install --quiet --upgrade pip
	.venv/bin/python -m pip install --quiet .
	.venv/bin/python examples/quickstart.py

# The dev virtualenv: rivers (editable) with the test tools, every package at the
# exact version of requirements/dev.lock, so a new release of a linter or of a
# dependency cannot break a fresh clone. It is remade only when pyproject.toml or the
# lock changes. `.ci/run` makes it first so the Kubernetes testbed's pods run
# `python -m rivers.worker` in it.
DEV_STAMP := .venv-dev/.installed
dev-env: $(DEV_STAMP)

$(DEV_STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv .venv-dev
	.venv-dev/bin/python -m pip install --quiet -c requirements/dev.lock -e '.[dev]'
	touch $@

# Re-resolve requirements/dev.lock from pyproject.toml (every extra, every platform)
# with a pinned uv in a throwaway virtualenv; commit the result. `make lock
# UPGRADE=1` moves every package to its newest release that fits the ranges.
UV_VERSION := 0.13.9
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
	.venv-lock/bin/uv pip compile pyproject.toml --all-extras --universal \
		--python-version 3.11 --no-header $(if $(UPGRADE),--upgrade) -o requirements/dev.lock
	rm -rf .venv-lock

test: dev-env
	PATH="$(CURDIR)/.venv-dev/bin:$$PATH" scripts/check

check:
	scripts/check

fix:
	scripts/fix

bench: dev-env
	.venv-dev/bin/python -m benchmarks

clean:
	rm -rf .venv .venv-dev .venv-lock .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
