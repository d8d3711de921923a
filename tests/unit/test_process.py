import sys

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
