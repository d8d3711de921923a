"""The class archive's bookkeeping: which options a JVM gets, how class lists merge, when it is stale."""

import os

from scorestream.class_archive import ClassArchive, merged_classes, refused


def test_a_jvm_lists_its_classes_until_the_archive_exists_then_maps_it(tmp_path):
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"x")
    archive = ClassArchive(tmp_path / "cds", (jar,), "java")
    assert archive.jvm_args(42) == [f"-XX:DumpLoadedClassList={archive.class_list(42)}"]
    assert archive.class_list(42) != archive.class_list(43)          # JVMs side by side: a list each
    archive.archive.write_bytes(b"archive")
    assert archive.jvm_args(42) == [f"-XX:SharedArchiveFile={archive.archive}"]


def test_a_failed_dump_is_not_tried_again_for_the_same_jars(tmp_path):
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"x")
    archive = ClassArchive(tmp_path / "cds", (jar,), "java")
    archive.directory.mkdir()
    archive.failed.write_text("exit 1")
    assert archive.jvm_args(1) == [] and archive.build("a.jar") is False


def test_new_jars_make_a_new_archive(tmp_path):
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"x")
    before = ClassArchive(tmp_path, (jar,), "java").archive
    jar.write_bytes(b"xy")
    assert ClassArchive(tmp_path, (jar,), "java").archive != before
    os.utime(jar, ns=(1, 1))
    other_jars = ClassArchive(tmp_path, (tmp_path / "b.jar",), "java").archive
    assert ClassArchive(tmp_path, (jar,), "java").archive not in (before, other_jars)


def test_lists_merge_by_their_plain_entries_without_a_line_still_being_written(tmp_path):
    first, second = tmp_path / "1.classlist", tmp_path / "2.classlist"
    first.write_text("java/lang/Object id: 0\norg/a/B id: 1\n@lambda-proxy org/a/B run ()V\norg/a/C$1 id: 2\n")
    second.write_text("java/lang/Object id: 0\norg/a/D id: 1\norg/a/E")      # E: not complete yet
    assert merged_classes([first, second, tmp_path / "gone.classlist"]) == [
        "java/lang/Object", "org/a/B", "org/a/C$1", "org/a/D"]


def test_a_dump_stopped_with_its_job_is_not_a_refusal():
    assert refused(1) and not refused(0)
    assert not refused(143) and not refused(137) and not refused(-15)    # SIGTERM to the JVM, SIGKILL, the kernel
