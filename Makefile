# The two commands of the README, and what they need. Each step is skipped when
# already done (stamp files), so a bootstrapped checkout starts at once.
PYTHON ?= python3
VENV   := .venv
JARS   := .scorestream/jars

.PHONY: test test-slow test-faults demo bootstrap jars promtool clean images wheelhouse base-image test-containers

bootstrap: $(VENV)/.installed $(JARS)/.fetched promtool

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# The broker's jars and the Flink Kafka connector, pinned in pom.xml.
$(JARS)/.fetched: pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) not found: install it (apt-get install maven) and retry" >&2; exit 1; }
	rm -rf $(JARS)/kafka $(JARS)/flink
	mvn --quiet --batch-mode -P kafka dependency:copy-dependencies
	mvn --quiet --batch-mode -P flink dependency:copy-dependencies
	touch $@

jars: $(JARS)/.fetched

# promtool (rule unit tests) and prometheus (the server the canary's integration test scrapes with):
# Debian's package; installed when missing and we are root, as on CI.
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool not found: install Debian's prometheus package (apt-get install prometheus) and retry" >&2; exit 1; fi; }

test: bootstrap
	$(VENV)/bin/python -m pytest -m "not slow"

# The slow integration tests (hot swap under load, learning from outcomes): CI runs them after `make test`.
test-slow: bootstrap
	$(VENV)/bin/python -m pytest -m "slow and not faults" tests/integration

# Broker faults under load (docs/operations.md): the single broker restarted, a node of three killed.
# .ci/run calls it after test-slow.
test-faults: bootstrap
	$(VENV)/bin/python -m pytest -m faults tests/integration

# Container images (docs/containers.md). BASE names a Debian bookworm image with Python 3.11
# (e.g. BASE=python:3.11-slim where a registry is reachable); empty: a base is built here with
# debootstrap. Python packages come from a wheelhouse built on this host, jars from `make jars`.
DOCKER    ?= docker
BASE      ?=
BASE_TAG  := scorestream-base:bookworm
WHEELHOUSE := .scorestream/wheelhouse
IMAGES    := worker jobs kafka

wheelhouse: $(WHEELHOUSE)/.built

# async-timeout: redis (under apache-flink) wants it on Python < 3.11.3 (Debian's 3.11.2), not on this host's.
$(WHEELHOUSE)/.built: compose/requirements-worker.txt compose/requirements-jobs.txt $(VENV)/.installed
	$(VENV)/bin/pip wheel --quiet -w $(WHEELHOUSE) -r compose/requirements-worker.txt -r compose/requirements-jobs.txt \
		'async-timeout>=4.0.3'
	touch $@

base-image:
	@if [ -z "$(BASE)" ] && ! $(DOCKER) image inspect $(BASE_TAG) >/dev/null 2>&1; then \
		echo "building $(BASE_TAG) with debootstrap (about a minute)"; compose/base-image.sh $(BASE_TAG); fi

images: bootstrap wheelhouse base-image
	@for image in $(IMAGES); do \
		echo "building scorestream-$$image"; \
		nice -n 10 $(DOCKER) build --quiet --build-arg BASE=$(or $(BASE),$(BASE_TAG)) \
			-f compose/Dockerfile.$$image -t scorestream-$$image . || exit 1; \
	done
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^scorestream-'

# The container tests (tests/containers): an engine is installed and started when missing (and
# stopped after), the images are built (cached after the first run), then the tests run.
test-containers: bootstrap jars
	@compose/engine.sh start
	@status=0; $(MAKE) --no-print-directory images && \
		flock /tmp/scorestream-heavy.lock $(VENV)/bin/python -m pytest tests/containers -p no:cacheprovider -o addopts=-ra \
		|| status=$$?; compose/engine.sh stop; exit $$status

demo: bootstrap
	$(VENV)/bin/scorestream demo

clean:
	-$(VENV)/bin/scorestream down
	rm -rf $(VENV) .scorestream
