# One command to install and run the example, one to run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python

DEMO_APP := examples.chat:app
DEMO_BIND ?= 127.0.0.1:5000
DIST ?= dist

.PHONY: demo demo-client test test-unit bench install docs docs-build docs-tables dist

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench,docs]"
	touch $@

install: $(VENV)/.installed

demo: install  ## install, then serve the chat page of examples/chat.py on http://127.0.0.1:5000/ with 4 workers
	$(VENV)/bin/sticky-cluster run $(DEMO_APP) --workers 4 --bind $(DEMO_BIND)

demo-client: install  ## a terminal client for the running demo (make demo in another terminal)
	$(PY) -m examples.chat_client http://$(DEMO_BIND)

# The suite's tests mostly wait on real processes: 4 pytest processes suit 2 cores.
TEST_PROCESSES ?= 4

test: install  ## the whole test suite, in parallel
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup

test-unit: install  ## the unit part alone (tests/unit: no process started, no sleep), in seconds
	$(PY) -m pytest -q tests/unit

bench: install  ## the benchmark; writes docs/benchmarks.md and docs/benchmarks.png
	$(PY) -m bench.run

DOCS_BIND ?= 127.0.0.1:8000

docs: install  ## serve the documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8000, rebuilt on each change
	$(VENV)/bin/mkdocs serve --dev-addr $(DOCS_BIND)

docs-build: install  ## build the documentation site into site/; a warning (a broken link, a page not in nav) fails it
	$(VENV)/bin/mkdocs build --strict --site-dir site

docs-tables: install  ## rewrite the tables of docs/options.md and docs/runtimes.md (cluster/setup/options.py, cluster/protocol/support.py)
	$(PY) -c 'import sys; from cluster.setup.options import main; \
		sys.exit(main(["--docs", "docs"]))'

dist: install  ## build the wheel (into dist/) to install elsewhere: pip install "sticky_cluster-VERSION-cp3XX-cp3XX-linux_x86_64.whl[asyncio]" (this platform and Python)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir $(DIST) .
	@ls $(DIST)/sticky_cluster-*.whl
