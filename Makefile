# The two commands of the README, and what they need. Each step is skipped when
# already done (stamp files), so a bootstrapped checkout starts at once.
PYTHON ?= python3
VENV   := .venv
JARS   := .scorestream/jars

.PHONY: test demo bootstrap jars promtool clean

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
	$(VENV)/bin/python -m pytest

demo: bootstrap
	$(VENV)/bin/scorestream demo

clean:
	-$(VENV)/bin/scorestream down
	rm -rf $(VENV) .scorestream
