# The two commands of the README, and what they need. Each step is skipped when
# already done (stamp files), so a bootstrapped checkout starts at once.
PYTHON ?= python3
VENV   := .venv
JARS   := .scorestream/jars

.PHONY: test demo bootstrap jars clean

bootstrap: $(VENV)/.installed $(JARS)/.fetched

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

test: bootstrap
	$(VENV)/bin/python -m pytest

demo: bootstrap
	$(VENV)/bin/scorestream demo

clean:
	-$(VENV)/bin/scorestream down
	rm -rf $(VENV) .scorestream
