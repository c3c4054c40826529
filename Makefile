# The README's two commands: `make demo` and `make test`. Both create .venv themselves.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install browser mcp-inspector labextension phoenix sdk-js docs demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,nats,test,demo,docs]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m demo.market_analyst

# The studio's browser tests need a real browser: Debian's chromium, installed once.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the browser tests"; \
		$(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

# The MCP Inspector's CLI (npm), a third-party MCP client the tests drive `loom mcp serve` with.
INSPECTOR := $(VENV)/npm/node_modules/.bin/mcp-inspector
$(INSPECTOR):
	@mkdir -p $(VENV)/npm
	cd $(VENV)/npm && npm install --no-audit --no-fund --loglevel=error @modelcontextprotocol/inspector@2 >/dev/null
mcp-inspector: $(INSPECTOR)

# The JupyterLab extension: TypeScript in labextension/, built into loom_studio/labextension,
# which is committed (installing Loom needs no node). Rebuilt with JupyterLab's jlpm and npm's
# @jupyter/builder (~35 s cold, ~5 s warm) only when its sources differ from those the bundle
# records (a fresh clone's file times say nothing); the editable install then takes the new
# bundle. tests/jupyterlab/test_bundle.py fails on a bundle older than its sources.
LABEXT       := labextension
LABEXT_STAMP := loom_studio/labextension/sources.sha256
LABEXT_SRCS  := $(addprefix $(LABEXT)/,package.json yarn.lock tsconfig.json .yarnrc.yml) \
                $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*.css)
JLPM         := PATH="$(abspath $(VENV))/bin:$$PATH" $(abspath $(VENV))/bin/jlpm
$(LABEXT_STAMP): $(LABEXT_SRCS) | $(STAMP)
	@$(PY) $(LABEXT)/stamp.py --check 2>/dev/null || { \
		echo "building the JupyterLab extension ($(LABEXT)/)" && \
		(cd $(LABEXT) && $(JLPM) install --immutable && $(JLPM) build:prod) && \
		$(PY) $(LABEXT)/stamp.py --write && \
		$(PY) -m pip install --quiet --no-deps -e . ; }
	@touch $@
labextension: $(LABEXT_STAMP)

# The JavaScript SDK (sdk/js): `npm ci` from the committed lock file (npm's zeromq 6 carries
# its prebuilt binary: nothing is compiled or downloaded beyond the registry), then tsc into
# sdk/js/dist, which tests/sdk and the examples run.
SDKJS       := sdk/js
SDKJS_DEPS  := $(SDKJS)/node_modules/.ci-stamp
$(SDKJS_DEPS): $(SDKJS)/package-lock.json
	cd $(SDKJS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
$(SDKJS)/dist/index.js: $(SDKJS_DEPS) $(wildcard $(SDKJS)/src/*.ts) $(SDKJS)/tsconfig.json
	cd $(SDKJS) && npx tsc -p tsconfig.json
sdk-js: $(SDKJS)/dist/index.js

# Arize Phoenix for tests/kernel/tracing/test_phoenix.py: heavy, so in a venv of its own (~3 min once)
PHOENIX := .venv-phoenix/bin/phoenix
$(PHOENIX):
	@echo "installing Arize Phoenix in .venv-phoenix (once, ~3 min)"
	@test -x .venv-phoenix/bin/python || python3 -m venv .venv-phoenix
	.venv-phoenix/bin/python -m pip install --quiet "arize-phoenix==20.26.*"
phoenix: $(PHOENIX)

test: install browser mcp-inspector labextension phoenix sdk-js
	$(PY) -m ruff check loom_kernel loom_studio tests examples demo benchmarks docs/_hooks
	# the JavaScript SDK's own tests (node's test runner; its interop tests with Python
	# agents are tests/sdk, in the parallel suite below)
	cd $(SDKJS) && npm test --silent
	LOOM_REQUIRE_PHOENIX=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --cov --cov-report= tests --ignore=tests/jupyterlab -m "not browser"
	# chromium driving a live studio or a real JupyterLab is load enough: the browser tests
	# run alone, after the parallel suite (~6 min; beside it their waits timed out)
	$(PY) -m pytest --cov --cov-append --cov-report= -o log_level=WARNING -m browser tests/studio
	$(PY) -m pytest --cov --cov-append --cov-report=term tests/jupyterlab
	$(PY) -m pytest --nbval-lax -p no:cacheprovider notebooks demo/market_analyst.ipynb

# The documentation site, from docs/ and the docstrings, into site/ (open site/index.html
# through a local server: `python -m http.server -d site`). Offline: no CDN fonts or scripts.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

test-fast: install sdk-js
	$(PY) -m pytest -n $(PYTEST_WORKERS) -x tests

lint: install
	$(PY) -m ruff check --fix loom_kernel loom_studio tests examples demo benchmarks docs/_hooks
	$(PY) -m ruff format loom_kernel loom_studio tests examples demo benchmarks docs/_hooks

bench: install
	$(VENV)/bin/loom bench

clean:
	rm -rf $(VENV) .venv-phoenix .pytest_cache .coverage* .loom site $(LABEXT)/node_modules $(LABEXT)/lib $(LABEXT)/tsconfig.tsbuildinfo \
		$(SDKJS)/node_modules $(SDKJS)/dist $(SDKJS)/build
