"""Processes the embedded stack starts and stops: a pid file and a log file each.

A pid file holds the pid and the process start time (from /proc), so a pid
reused by an unrelated process after a reboot is never mistaken for ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of pid, or None when it is gone or a zombie."""
    try:
        fields = _fields(pid)
    except OSError:
        return None
    state, start = fields[0], fields[19]
    return None if state in ("Z", "X") else start


@dataclass(frozen=True)
class ManagedProcess:
    """One long-running process of the stack, known by a stable name (its stage id)."""

    name: str
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the process we started is alive, else None."""
        try:
            pid_text, start = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == start else None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start argv detached from the terminal, output appended to the log file."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        start = _start_time(proc.pid)
        self.pid_file.write_text(f"{proc.pid} {start}\n")
        return proc

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM to its process group (a Flink job's JVM is a child), SIGKILL after timeout_s.
        True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _start_time(pid) is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        _signal_group(pid, signal.SIGKILL)          # the leader's children too, if any lingers
        while _start_time(pid) is not None and not _reap(pid):
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _signal_group(pid: int, sig: int) -> None:
    """Our processes lead their own session (start_new_session), so their group id is their pid."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> bool:
    """Collect our own child's exit status so it does not linger as a zombie."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def _fields(pid: int, tid: str | None = None) -> list[str]:
    """The fields of /proc/<pid>/stat (or of its thread's, /proc/<pid>/task/<tid>/stat) after the command name
    (field 3, the state, first)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    return Path(path).read_text().rsplit(")", 1)[1].split()


def command_line(pid: int) -> list[str]:
    """The command line of pid; [] when it is gone."""
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    except OSError:
        return []


def children() -> dict[int, list[int]]:
    """Every process's children, from one pass over /proc."""
    found: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found.setdefault(int(_fields(int(stat.parent.name))[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def tree(pid: int, children_of: dict[int, list[int]] | None = None) -> list[int]:
    """pid and all its descendants (a Flink job's JVM is a child of its Python)."""
    children_of = children() if children_of is None else children_of
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children_of.get(p, [])
    return found


def rss_bytes(pid: int, children_of: dict[int, list[int]] | None = None) -> int:
    """Resident memory of pid and all its descendants."""
    total = 0
    for p in tree(pid, children_of):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def cpu_seconds(pid: int, children_of: dict[int, list[int]] | None = None) -> float:
    """CPU time (user + system, every thread) of pid and all its descendants so far, including their children
    that have exited and were waited for (the kernel adds those to their parent's cutime/cstime)."""
    ticks = 0
    for p in tree(pid, children_of):
        try:
            fields = _fields(p)
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])     # utime stime cutime cstime: fields 14-17 of stat(5)
    return ticks / CLOCK_TICKS


def _threads(pid: int):
    """(process, thread id) of every thread of pid and its descendants that still runs."""
    for p in tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue          # ended meanwhile
        for tid in tids:
            yield p, tid


def _is_jit_compiler(pid: int, tid: str) -> bool:
    """A JIT compiler thread of HotSpot: "C1 CompilerThread0", ... (the kernel keeps 15 characters of a name)."""
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith(("C1 CompilerThre", "C2 CompilerThre"))
    except OSError:
        return False


def jit_cpu_seconds(pid: int) -> float:
    """CPU time so far of the JIT compiler threads of pid and its descendants (a JVM compiles its hot code for
    minutes after it starts, with cores the answers could use)."""
    ticks = 0
    for p, tid in _threads(pid):
        if _is_jit_compiler(p, tid):
            try:
                ticks += sum(int(x) for x in _fields(p, tid)[11:13])     # utime stime
            except OSError:
                continue
    return ticks / CLOCK_TICKS


def host_cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole host so far, in clock ticks, from /proc/stat: busy is all but idle and
    I/O wait (a share of two readings says how much of the host's CPUs were taken meanwhile, by anything)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total


def host_busy_since(reading: tuple[int, int]) -> float:
    """Share of the host's CPU time taken (by anything) since an earlier host_cpu_jiffies() reading."""
    busy, total = host_cpu_jiffies()
    return (busy - reading[0]) / max(1, total - reading[1])


def single_core_speed(seconds: float = 1.0) -> float:
    """Millions of iterations per second of a plain Python loop on one core: how fast the host runs now, to quote
    beside a benchmark's figures (on a shared VM the same idle machine ran 6.8 M and 13.1 M within the hour)."""
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(10_000):
            n += 1
    return n / (time.perf_counter() - began) / 1e6


def host_speed(seconds: float = 1.0) -> list[float]:
    """single_core_speed of every CPU, measured at once (a process each): what the host gives all its cores
    together. On a shared VM a second core can run at half the first's speed while either alone is fast."""
    cores = os.cpu_count() or 1
    # new interpreters, not forks: a fork of a process with other threads (PyFlink's gateway, gRPC) can hang on
    # a lock one of them held (a pool of forks once never returned in `make test`); they start together at start_at
    start_at = time.time() + 0.5
    probe = ("import sys, time; from scorestream.process import single_core_speed; "
             "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); print(single_core_speed(float(sys.argv[1])))")
    children = [subprocess.Popen([sys.executable, "-c", probe, str(seconds), str(start_at)], stdout=subprocess.PIPE,
                                 text=True) for _ in range(cores)]
    try:
        return sorted((float(child.communicate(timeout=seconds + 60)[0]) for child in children), reverse=True)
    finally:
        for child in children:      # none left behind when one did not answer (a timeout, a crash)
            if child.poll() is None:
                child.kill()
                child.wait()


def describe_speeds(speeds: list[float]) -> str:
    """host_speed's figures as bench and CI print them: each core's, then their sum."""
    return f"{' + '.join(f'{s:.1f}' for s in speeds)} = {sum(speeds):.1f} M loop iterations/s together"


def set_scheduler(pid: int, policy: int, jit_compilers: int | None = None,
                  autogroup_nice: int | None = None) -> None:
    """Every thread of pid and its descendants under the scheduling policy (os.SCHED_*: a policy is per
    thread); their JIT compiler threads under `jit_compilers` instead, if given (the compiler threads a JVM
    starts later inherit it from them). A pid that leads its session gets its autogroup's nice too:
    `autogroup_nice`, by default 19 under SCHED_IDLE, else 0 (see set_autogroup_nice). PermissionError when
    not allowed (leaving SCHED_IDLE needs root, CAP_SYS_NICE or an RLIMIT_NICE of 20)."""
    for p, tid in _threads(pid):
        own = jit_compilers if jit_compilers is not None and _is_jit_compiler(p, tid) else policy
        try:
            os.sched_setscheduler(int(tid), own, os.sched_param(0))
        except ProcessLookupError:
            continue          # ended meanwhile
    try:
        leads_session = os.getsid(pid) == pid
    except ProcessLookupError:
        return
    if leads_session:
        if autogroup_nice is None:
            autogroup_nice = 19 if policy == os.SCHED_IDLE else 0
        set_autogroup_nice(pid, autogroup_nice)


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """The nice value of pid's autogroup (all of its session); whether it was set. With
    sched_autogroup on, the kernel first shares the CPUs between sessions, each an autogroup of weight 1024 at
    nice 0, and only then between the threads of one by their policies: a part at SCHED_IDLE in a session of
    its own (ours all are, ManagedProcess) took as much as each of the answering parts (three busy loops of
    three sessions, one at SCHED_IDLE: 28, 35 and 37 % of the CPU time; at autogroup nice 19: 1, 49 and 49 %).
    Unprivileged: any nice from 0 to 19 on one's own processes; the kernel takes at most ten changes a second
    from them (EAGAIN), so a refused one is tried again. Best effort: False where it cannot be set (a read-only
    /proc in a container), and the threads' policies are all there is."""
    path = Path(f"/proc/{pid}/autogroup")
    for _ in range(20):
        try:
            path.write_text(str(nice))
            return True
        except BlockingIOError:
            time.sleep(0.11)
        except OSError:
            return False          # no autogroups in this kernel, pid gone, or not allowed here
    return False
