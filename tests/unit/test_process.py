import sys
import time
from pathlib import Path

import pytest

from scorestream.process import ManagedProcess


def test_start_status_stop(tmp_path):
    proc = ManagedProcess("sleeper", tmp_path)
    assert proc.pid() is None
    proc.start([sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"])
    assert proc.pid() is not None
    assert proc.stop(timeout_s=5)
    assert proc.pid() is None and not proc.pid_file.exists()
    assert not proc.stop()      # stopping twice is harmless


def test_a_stale_pid_file_is_not_ours(tmp_path):
    proc = ManagedProcess("ghost", tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text("1 999999999\n")   # pid 1 exists but started at another time
    assert proc.pid() is None


def test_a_part_goes_to_idle_priority_thread_by_thread(tmp_path):
    """set_scheduler reaches every thread of the tree (a JVM's threads, a job's JVM under its Python); a
    process without a JIT compiler has none to count."""
    import os
    from scorestream.process import jit_cpu_seconds, set_scheduler
    proc = ManagedProcess("threads", tmp_path)
    proc.start([sys.executable, "-c", "import threading, time\n"
                "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
                "print('up', flush=True); time.sleep(60)"])
    try:
        pid = proc.pid()
        while "up" not in proc.log_tail():
            time.sleep(0.05)
        set_scheduler(pid, os.SCHED_IDLE)
        tids = os.listdir(f"/proc/{pid}/task")
        assert len(tids) >= 4 and {os.sched_getscheduler(int(t)) for t in tids} == {os.SCHED_IDLE}
        assert jit_cpu_seconds(pid) == 0.0
    finally:
        proc.stop(timeout_s=5)


def test_a_starved_new_version_goes_on_at_normal_priority(tmp_path, monkeypatch):
    """An upgrade's new version starts at SCHED_IDLE; one that gets (next to) no CPU over the window is given
    normal priority, with a line that says so; one that gets its share stays idle."""
    import os
    from savepoints import upgrade
    monkeypatch.setattr(upgrade, "STARVED_WINDOW_S", 2)
    said = []
    procs = {name: ManagedProcess(name, tmp_path) for name in ("starved", "busy")}
    procs["starved"].start(["chrt", "--idle", "0", sys.executable, "-c", "import time; time.sleep(60)"])
    procs["busy"].start(["chrt", "--idle", "0", sys.executable, "-c", "while True: pass"])
    try:
        watches = {name: upgrade._StartPriority(proc, said.append) for name, proc in procs.items()}
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for watch in watches.values():
                watch.check()
            time.sleep(0.2)
        assert not watches["starved"].watching and watches["busy"].watching
        assert watches["starved"].starved and not watches["busy"].starved
        assert os.sched_getscheduler(procs["starved"].pid()) == os.SCHED_OTHER
        assert os.sched_getscheduler(procs["busy"].pid()) == os.SCHED_IDLE
        assert len(said) == 1 and "no idle CPU" in said[0] and "normal priority" in said[0]
        unwatched = upgrade._StartPriority(procs["busy"], said.append, watch=False)   # a job on a session cluster
        unwatched.check()
        assert len(said) == 1
    finally:
        for proc in procs.values():
            proc.stop(timeout_s=5)


def test_command_line_of_a_process_and_of_one_gone():
    import subprocess

    from scorestream.process import command_line
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "an argument"])
    try:
        deadline = time.monotonic() + 10
        while not command_line(child.pid) and time.monotonic() < deadline:   # empty for an instant after exec
            time.sleep(0.01)
        assert command_line(child.pid)[-2:] == ["import time; time.sleep(30)", "an argument"]
    finally:
        child.kill()
        child.wait()
    assert command_line(child.pid) == []


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="this kernel has no autogroups")
def test_idle_priority_holds_against_the_parts_of_other_sessions(tmp_path):
    """The kernel shares the CPUs between sessions before it looks at a thread's policy: a part at SCHED_IDLE
    in a session of its own (as every ManagedProcess is) took a session's share until its autogroup got nice 19.
    One busy loop per CPU at normal priority, each in a session of its own, and one at SCHED_IDLE."""
    import os
    from scorestream.process import cpu_seconds, set_scheduler
    loop = [sys.executable, "-c", "while True: pass"]
    procs = [ManagedProcess(f"busy{i}", tmp_path) for i in range(os.cpu_count() or 1)]
    idle = ManagedProcess("idle", tmp_path)
    try:
        for proc in procs:
            proc.start(loop)
        idle.start(["chrt", "--idle", "0", *loop])
        set_scheduler(idle.pid(), os.SCHED_IDLE)
        assert Path(f"/proc/{idle.pid()}/autogroup").read_text().split()[-1] == "19"
        time.sleep(0.5)
        before = [cpu_seconds(p.pid()) for p in (*procs, idle)]
        time.sleep(2)
        got = [cpu_seconds(p.pid()) - b for p, b in zip((*procs, idle), before)]
        assert got[-1] < min(got[:-1]) / 4, got
        set_scheduler(idle.pid(), os.SCHED_OTHER, autogroup_nice=10)       # an upgrade's last seconds before the cut
        assert Path(f"/proc/{idle.pid()}/autogroup").read_text().split()[-1] == "10"
        set_scheduler(idle.pid(), os.SCHED_OTHER)
        assert Path(f"/proc/{idle.pid()}/autogroup").read_text().split()[-1] == "0"
    finally:
        for proc in (*procs, idle):
            proc.stop(timeout_s=5)


def test_an_autogroup_that_cannot_be_set_is_told_not_raised():
    from scorestream.process import set_autogroup_nice
    assert set_autogroup_nice(2**22 + 1, 19) is False          # beyond any pid: no such process
