"""What `up` says when Java or Maven is missing: one line, what and how to fix."""

import pytest

from scorestream.broker import ensure_jars, java_binary
from scorestream.errors import UserError
from scorestream.settings import StackSettings


def test_java_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Java not found: install a JDK 17"):
        java_binary()


def test_old_java_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.2"\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="needs Java 17"):
        java_binary()


def test_jars_missing_and_maven_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Maven \\(mvn\\) not found: install maven and run `make jars`"):
        ensure_jars(StackSettings(jars_dir=tmp_path / "jars"))


def test_cluster_id_never_reads_as_an_option():
    from scorestream.broker import cluster_id
    ids = [cluster_id() for _ in range(2000)]          # about 31 of them would start with "-" if drawn blindly
    assert len(set(ids)) == 2000 and not any(i.startswith("-") for i in ids) and {len(i) for i in ids} == {22}
