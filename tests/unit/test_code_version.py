"""A job's code version, from the project on disk and from the code archive a cluster's interpreter imported."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from scorestream import flink

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from scorestream import flink
print(flink.loaded_code_version(sys.argv[2]))
try:
    flink.check_loaded_code(sys.argv[2], sys.argv[3])
    print("ok")
except RuntimeError as exc:
    print(exc)
"""


def _loaded(archive, job, submitted, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, str(archive), job, submitted], capture_output=True,
                          text=True, cwd=tmp_path, check=True)
    return done.stdout.splitlines()


def test_the_archive_a_cluster_imports_has_the_version_of_the_code_on_disk(tmp_path):
    archive = flink.code_archive("t")
    for job in ("extract", "rendezvous"):
        assert _loaded(archive, job, flink.code_version(job), tmp_path) == [flink.code_version(job), "ok"]


def test_an_interpreter_that_imported_another_version_refuses_to_run_this_one(tmp_path):
    archive = flink.code_archive("t")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(other, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            new.writestr(name, data + b"\n# changed\n" if name == "rendezvous/policy.py" else data)
    loaded, said = _loaded(other, "rendezvous", flink.code_version("rendezvous"), tmp_path)
    assert loaded != flink.code_version("rendezvous")
    assert "has code version" in said and "TaskManager of its own" in said
    assert _loaded(other, "extract", flink.code_version("extract"), tmp_path)[1] == "ok"     # not its code


def test_the_version_is_read_once_per_interpreter_and_unknown_when_the_files_are_gone(monkeypatch):
    """Flink deletes a finished job's shipped files while its modules stay imported in a thread-mode TaskManager."""
    monkeypatch.setattr(flink, "_LOADED", {})
    monkeypatch.setattr(flink, "_package_sources", lambda package, wanted: {})
    assert flink.loaded_code_version("rendezvous") is None
    flink.check_loaded_code("rendezvous", "0000000000")          # not known: not refused
    monkeypatch.setattr(flink, "_LOADED", {"rendezvous": "1111111111"})
    with pytest.raises(RuntimeError, match="has code version 1111111111"):
        flink.check_loaded_code("rendezvous", "0000000000")


def test_code_imported_from_the_project_on_disk_has_the_version_on_disk():
    assert flink.loaded_code_version("rendezvous") == flink.code_version("rendezvous")
    flink.check_loaded_code("rendezvous", flink.code_version("rendezvous"))
    with pytest.raises(RuntimeError, match="has code version"):
        flink.check_loaded_code("rendezvous", "0000000000")
