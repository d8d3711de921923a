"""Class data sharing (AppCDS) for the Flink jobs' JVMs: the classes they load, parsed and verified once.

A Flink job's JVM spends 20-28 CPU-seconds starting (class loading, verification, the JIT compiling the
loaders), on a 2-core host that shares it with the answering system. With an archive of those classes the
same start takes about an eighth less (docs/rendezvous.md, "A job's JVM start"). Java 17 cannot make the
archive while the JVM starts, so it is made in two steps:

1. a JVM started while no archive exists lists the classes it loads (`-XX:DumpLoadedClassList`);
2. once that job has run a while (its classes for records and checkpoints loaded), its Python process starts
   a process of its own session (it goes on when the job is stopped) that makes the archive from the lists
   with `java -Xshare:dump`, at idle priority, and removes the lists.

Every JVM started after that maps the archive (`-XX:SharedArchiveFile`). The archive's name carries a hash of
the JVM and of the jars it was made from: new jars or a new JVM make a new archive, and a JVM that finds an
archive not matching its class path ignores it (`-Xshare:auto`, Java's default).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from scorestream.process import set_scheduler

# A plain class entry of a class list ("java/lang/Object id: 0"); the lambda and source entries refer to ids of
# their own list, so lists of several JVMs merge only by their plain entries.
_PLAIN = re.compile(r"^([\w/$]+)(?: id: \d+)?$")


@dataclass(frozen=True)
class ClassArchive:
    """The archive of one class path, in `directory`, for the JVMs of `java` (the one that dumps it too);
    `jars` are the files whose change makes it stale."""

    directory: Path
    jars: tuple[Path, ...]
    java: str
    name: str = "flink"

    @cached_property
    def key(self) -> str:
        digest = hashlib.sha256()
        java = Path(shutil.which(self.java) or self.java)
        for f in (java.resolve() if java.exists() else java, *sorted(self.jars)):
            st = f.stat() if f.exists() else None
            digest.update(f"{f}:{st and st.st_size}:{st and st.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    @property
    def archive(self) -> Path:
        return self.directory / f"{self.name}-{self.key}.jsa"

    @property
    def failed(self) -> Path:
        """Left by a dump that failed, with java's output: not tried again for the same jars."""
        return self.archive.with_suffix(".failed")

    def class_list(self, owner: int) -> Path:
        return self.directory / f"{self.name}-{self.key}.{owner}.classlist"

    def jvm_args(self, owner: int) -> list[str]:
        """For a JVM about to start: map the archive, or list the classes for one (owner: a pid of ours, so
        that JVMs started side by side write lists of their own)."""
        if self.archive.exists():
            return [f"-XX:SharedArchiveFile={self.archive}"]
        if self.failed.exists():
            return []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:                  # a read-only image: the JVM starts without
            return []
        return [f"-XX:DumpLoadedClassList={self.class_list(owner)}"]

    def build(self, classpath: str) -> bool:
        """Make the archive from the class lists written so far, for JVMs started with `classpath`, at this
        process's priority (build_apart's is idle). True if it exists afterwards. One builder at a time: another
        one that runs is left to it."""
        if self.archive.exists():
            return True
        if self.failed.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f".{self.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if self.archive.exists():
                return True
            for stale in [*self.directory.glob("*.merged"), *self.directory.glob("*.partial")]:
                stale.unlink(missing_ok=True)     # of a builder killed meanwhile (the lock is ours now)
            lists = sorted(self.directory.glob(f"{self.name}-{self.key}.*.classlist"))
            classes = merged_classes(lists)
            if not classes:
                return False
            listed = self.directory / f"{self.name}-{self.key}.{os.getpid()}.merged"
            partial = self.archive.with_suffix(f".{os.getpid()}.partial")
            listed.write_text("\n".join(classes) + "\n")
            try:
                done = subprocess.run(
                    [self.java, "-Xshare:dump", f"-XX:SharedClassListFile={listed}",
                     f"-XX:SharedArchiveFile={partial}", "-cp", classpath],
                    capture_output=True, text=True, timeout=1800)
                if refused(done.returncode):     # (stopped with its job: the next job tries again)
                    self.failed.write_text(f"exit {done.returncode}\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
                if done.returncode != 0 or not partial.exists():
                    return False
                partial.rename(self.archive)
            except subprocess.TimeoutExpired:
                return False
            finally:
                listed.unlink(missing_ok=True)
                partial.unlink(missing_ok=True)
            for f in lists:
                f.unlink(missing_ok=True)
            return True

    def build_apart(self, classpath: str) -> subprocess.Popen:
        """build() in a process of its own session at idle priority: it finishes when the job that started it
        is stopped first (a dump at idle priority on a busy host can take minutes). No preexec_fn: the job has many
        threads, and Python code run between fork and exec can deadlock on a lock one of them held; the process
        lowers its own priority."""
        return subprocess.Popen([sys.executable, "-m", "scorestream.class_archive", str(self.directory), self.name,
                                 self.java, classpath, *map(str, self.jars)], cwd=Path(__file__).resolve().parent.parent,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)


def refused(returncode: int) -> bool:
    """Java refused the dump, as opposed to its being stopped by a signal: < 0 when the kernel ended it,
    128 + the signal's number when the JVM's own handler did (143: SIGTERM, as when its job is stopped)."""
    return 0 < returncode < 128


def merged_classes(lists: list[Path]) -> list[str]:
    """The plain class entries of every list, once each, in first-seen order (a class before the classes that
    a later line of its list loaded after it); a last line still being written is left out."""
    seen: dict[str, None] = {}
    for path in lists:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        lines = text.split("\n")
        for line in lines[:-1]:          # after the last newline: empty, or a line not yet complete
            m = _PLAIN.match(line)
            if m:
                seen.setdefault(m.group(1))
    return list(seen)


def _idle_priority() -> None:
    try:
        set_scheduler(os.getpid(), os.SCHED_IDLE)       # and its session's autogroup: it leads one
    except OSError:         # not allowed here: the dump runs at the job's own priority
        pass


if __name__ == "__main__":          # build_apart's process: directory name java classpath jar...
    directory, name, java, classpath, *jars = sys.argv[1:]
    _idle_priority()                # and so is the java it starts: the policy is inherited
    sys.exit(0 if ClassArchive(Path(directory), tuple(map(Path, jars)), java, name).build(classpath) else 1)
