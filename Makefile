# gigatile: two commands on a fresh machine — `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
VIEWER_VENDOR := tiler/viewer/vendor/openseadragon
NPM_ALL := node_modules/.gigatile-all-installed  # the whole npm install (the tests'), done
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: venv viewer iiif-viewers browser promtool faketime iiif-image test test-demo chaos demo demo-update demo-stop lint clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# OpenSeadragon from the npm registry, copied into the viewer's static files (not committed): the viewer's one
# runtime dependency, so the demo installs it alone (`npm ci --omit=dev`), unless the tests' install is there.
viewer: $(VIEWER_VENDOR)/openseadragon.min.js

$(VIEWER_VENDOR)/openseadragon.min.js: package.json package-lock.json
	test $(NPM_ALL) -nt package-lock.json || npm ci --omit=dev --no-audit --no-fund --loglevel=error
	rm -rf $(VIEWER_VENDOR) && mkdir -p $(dir $(VIEWER_VENDOR))
	cp -r node_modules/openseadragon/build/openseadragon $(VIEWER_VENDOR)

# The IIIF viewers the tests open our manifests in (tests/iiif/: Mirador, the Universal Viewer): npm
# devDependencies, installed for the tests only.
iiif-viewers: $(NPM_ALL)

$(NPM_ALL): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium for the viewer's end-to-end test (Playwright drives it; it cannot download browsers here).
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's Prometheus for promtool (the fleet's alert rules and config are checked in tests/infra/).
promtool:
	command -v promtool >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends prometheus)

# Debian's libfaketime for the chaos suite's skewed-clock scenario (a node's whole process tree off by minutes).
faketime:
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime)

# The official IIIF validator's test image (tests/iiif/): only its data file, from the iiif-validator-ng wheel
# (whose code does not import on Python 3.11; the validator itself is iiif-validator, in the test extra).
IIIF_IMAGE := $(VENV)/share/iiif/validation_image.png
iiif-image: $(IIIF_IMAGE)

$(IIIF_IMAGE): $(STAMP)
	rm -rf $(VENV)/share/iiif && mkdir -p $(VENV)/share/iiif/wheel
	$(BIN)/python -m pip download --quiet --no-deps -d $(VENV)/share/iiif/wheel iiif-validator-ng==0.1.0
	$(BIN)/python -c "import glob, sys, zipfile; w = glob.glob(sys.argv[1] + '/*.whl')[0]; \
	  open(sys.argv[2], 'wb').write(zipfile.ZipFile(w).read('iiif_validator/validation_image.png'))" \
	  $(VENV)/share/iiif/wheel $@
	rm -rf $(VENV)/share/iiif/wheel

test: venv iiif-viewers viewer browser promtool iiif-image
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# DEMO_ARGS passes more, e.g. DEMO_ARGS="--gigapixels 1" (a 1-Gpx wall) or "--work /tmp/demo" (another folder).
demo: venv viewer
	$(BIN)/python scripts/demo.py --work demo-work $(DEMO_ARGS)

# The newcomer's walk-through on a real demo (1-Gpx wall, the demo's fixed addresses: one at a time on a
# machine) with headless Chromium: slow, so not in `make test` (tests/viewer/test_walkthrough.py).
test-demo: venv viewer browser
	$(BIN)/python -m pytest -m slow tests/viewer/test_walkthrough.py $(PYTEST_ARGS)

# The chaos suite (tests/chaos/): a local cluster under bounded, pixel-checked load while faults are injected one
# at a time; a JSON and a Markdown report per scenario in build/chaos/ (GIGATILE_CHAOS_RESULTS=DIR for another).
# Its reduced run (a node SIGKILLed, corrupted objects, a full disk) is part of `make test`.
chaos: venv faketime
	$(BIN)/python -m pytest -m "slow or not slow" tests/chaos $(PYTEST_ARGS)

# With a demo running (in another terminal): change a few covers where the viewer opens, publish the diff.
demo-update: venv
	$(BIN)/python scripts/demo.py update --work demo-work $(DEMO_ARGS)

demo-stop: venv
	$(BIN)/python scripts/demo.py stop --work demo-work $(DEMO_ARGS)

# Benchmarks (not part of `make test`): Debian's anchors when missing, the `bench` extra, then the suite.
# `make bench QUICK=1` is the reduced run (about 10 minutes); BENCH_ARGS passes more (e.g. --only render,iipsrv).
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

# Everything the Makefile makes; refused while a demo runs from demo-work/ (its lock is held).
clean:
	@if [ -e demo-work/demo.lock ] && ! flock -n demo-work/demo.lock true; then \
	  echo "a demo is running from demo-work/: stop it first (Ctrl-C in its terminal, or make demo-stop)"; exit 1; fi
	@for root in local-nodes/*/; do [ -f "$$root/local/launch.json" ] && \
	  scripts/ec2_render.sh --local --stop "$$root" >/dev/null 2>&1 || true; done
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info node_modules $(VIEWER_VENDOR) demo-work local-nodes
