# gigatile: two commands on a fresh machine — `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
VIEWER_VENDOR := tiler/viewer/vendor/openseadragon
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv viewer browser promtool test demo demo-update lint clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# OpenSeadragon from the npm registry, copied into the viewer's static files (not committed).
viewer: $(VIEWER_VENDOR)/openseadragon.min.js

$(VIEWER_VENDOR)/openseadragon.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VIEWER_VENDOR) && mkdir -p $(dir $(VIEWER_VENDOR))
	cp -r node_modules/openseadragon/build/openseadragon $(VIEWER_VENDOR)

# Debian's Chromium for the viewer's end-to-end test (Playwright drives it; it cannot download browsers here).
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's Prometheus for promtool (the fleet's alert rules and config are checked in tests/infra/).
promtool:
	command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends prometheus)

test: venv viewer browser promtool
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: venv viewer
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# With a demo running (in another terminal): change a few covers and publish the diff.
demo-update: venv
	$(BIN)/python scripts/demo.py update

# Benchmarks (not part of `make test`): Debian's anchors when missing, the `bench` extra, then the suite.
# `make bench QUICK=1` is the reduced run (under 5 minutes); BENCH_ARGS passes more (e.g. --only render,iipsrv).
# iipimage-server depends on "libapache2-mod-fcgid | lighttpd": naming lighttpd keeps apache2 out.
BENCH_DEBS  := libvips-tools iipimage-server lighttpd nginx wrk time
BENCH_STAMP := $(VENV)/.bench-installed
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: venv $(BENCH_STAMP)
	@missing=""; for p in $(BENCH_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing; fi
	$(BIN)/python -m bench.suite $(if $(filter 1 yes true,$(QUICK)),--quick) $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info node_modules $(VIEWER_VENDOR)
