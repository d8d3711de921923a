"""A real JVM lists its classes, the archive is made from the list, and the next JVM maps its classes from it."""

import shutil
import subprocess

import pytest

from scorestream.class_archive import ClassArchive

pytestmark = pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK (javac)")
JAVA = "java"

HELLO = """
public class Hello {
    public static void main(String[] args) { System.out.println(new Greeting().text()); }
}
class Greeting { String text() { return "hello"; } }
"""


def _jar(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Hello.java").write_text(HELLO)
    subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(tmp_path / "src" / "Hello.java")], check=True)
    jar = tmp_path / "hello.jar"
    subprocess.run(["jar", "cf", str(jar), "-C", str(tmp_path / "classes"), "."], check=True)
    return jar


def _java(archive: ClassArchive, owner: int, jar, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([JAVA, *archive.jvm_args(owner), *extra, "-cp", str(jar), "Hello"],
                          capture_output=True, text=True, check=True, timeout=120)


def test_the_next_jvm_loads_its_classes_from_the_archive(tmp_path):
    jar = _jar(tmp_path)
    archive = ClassArchive(tmp_path / "cds", (jar,), JAVA, name="hello")
    assert _java(archive, 1, jar).stdout.strip() == "hello"         # lists its classes
    assert "Greeting" in archive.class_list(1).read_text()

    # as a job makes it: in a process of its own session (it outlives the job)
    assert archive.build_apart(str(jar)).wait(timeout=300) == 0, (
        archive.failed.read_text() if archive.failed.exists() else "no archive")
    assert archive.archive.exists() and not archive.class_list(1).exists()

    loaded = _java(archive, 2, jar, "-Xshare:on", "-Xlog:class+load=info").stdout   # on: fails if not mapped
    assert "Greeting source: shared objects file" in loaded, loaded[-2000:]


def test_an_archive_of_other_jars_is_ignored_not_fatal(tmp_path):
    jar = _jar(tmp_path)
    archive = ClassArchive(tmp_path / "cds", (jar,), JAVA, name="hello")
    _java(archive, 1, jar)
    assert archive.build(str(jar))
    other = tmp_path / "other.jar"
    shutil.copy(jar, other)
    done = subprocess.run([JAVA, f"-XX:SharedArchiveFile={archive.archive}", "-cp", str(other),
                           "Hello"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "hello", done.stdout + done.stderr
