"""A standalone Flink session cluster from the distribution that the apache-flink package ships
(pyflink/bin, pyflink/lib): one JobManager and one TaskManager on 127.0.0.1, for tests and benchmarks.

    with SessionCluster(workdir) as cluster:          # its own conf dir (FLINK_CONF_DIR), logs and ports
        scorestream up --flink cluster.url

The settings the jobs need of any session cluster (docs/savepoints.md): task slots (one per job, two per job
during an upgrade), the Python executable of this virtualenv, Python in process mode, and a working directory
without the project's code in it (process mode's worker puts it first on sys.path: cluster.dir here).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyflink

from savepoints.rest import FlinkRest
from scorestream.flink import METRICS_FRESH, flink_python_jar, python_path
from scorestream.ports import free_port
from scorestream.settings import JVM_GC_ARGS

FLINK_HOME = Path(pyflink.__file__).parent


def session_config(rest_port: int, rpc_port: int, slots: int = 4, jobmanager: str = "127.0.0.1",
                   taskmanager: str = "127.0.0.1", bind: str = "127.0.0.1", python: str = "process") -> dict[str, str]:
    """jobmanager, taskmanager: the addresses the daemons are reached at; bind: where they listen.
    python: how the jobs run Python, process or thread (see daemon_environment); the jobs ask the cluster."""
    return {
        "jobmanager.rpc.address": jobmanager, "jobmanager.rpc.port": str(rpc_port),
        "jobmanager.bind-host": bind, "jobmanager.memory.process.size": "1024m",
        "taskmanager.host": taskmanager, "taskmanager.bind-host": bind,
        "taskmanager.memory.process.size": "2048m", "taskmanager.numberOfTaskSlots": str(slots),
        "rest.address": jobmanager, "rest.bind-address": bind, "rest.port": str(rest_port),
        "parallelism.default": "1", "metrics.fetcher.update-interval": METRICS_FRESH,
        "env.java.opts.all": " ".join(JVM_GC_ARGS),    # the collector's pause goal, as for every JVM of the system
        # the Python of the jobs' functions: this virtualenv's. process: a worker process per operator, so two
        # versions of a job in one TaskManager never share an interpreter; thread: the TaskManager's own embedded
        # interpreter, ~6x faster on the answer's path, one per TaskManager (docs/savepoints.md)
        "python.executable": sys.executable, "python.execution-mode": python,
    }


def daemon_environment(workdir: Path, python: str) -> dict[str, str]:
    """What the daemons need beyond their configuration. Thread mode: flink-python on the cluster's classpath
    (a lib/ folder of the distribution's jars plus it; shipped with each job instead, its second load of
    libpython fails), and this virtualenv's packages on the embedded interpreter's path."""
    if python != "thread":
        return {}
    lib = workdir / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    for jar in [*(FLINK_HOME / "lib").glob("*.jar"), flink_python_jar()]:
        (lib / jar.name).symlink_to(jar)
    return {"FLINK_LIB_DIR": str(lib), "PYTHONPATH": python_path()}


class SessionCluster:
    """Start with start() (or `with`), stop with stop(): both daemons in the foreground of their own sessions,
    killed by their process groups, so nothing outlives the test."""

    def __init__(self, workdir: Path, slots: int = 4, rest_port: int | None = None, python: str = "process"):
        self.dir = Path(workdir)
        self.rest_port = rest_port or free_port()
        self.python = python
        self.config = session_config(self.rest_port, free_port(), slots, python=python)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout_s: float = 120.0) -> "SessionCluster":
        logs = self.dir / "log"
        logs.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"FLINK_CONF_DIR": str(write_conf(self.dir / "conf", self.config)),
                            "FLINK_LOG_DIR": str(logs), "FLINK_PID_DIR": str(self.dir)} \
            | daemon_environment(self.dir, self.python)
        for daemon in ("jobmanager", "taskmanager"):
            with open(logs / f"{daemon}.out", "ab") as out:
                self.procs.append(subprocess.Popen(["bash", str(FLINK_HOME / "bin" / f"{daemon}.sh"),
                                                    "start-foreground"], env=env, stdout=out, cwd=self.dir,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True))
        rest, deadline = FlinkRest(self.url, timeout_s=2), time.monotonic() + timeout_s
        while True:
            try:
                if rest.overview()["taskmanagers"] >= 1:
                    return self
            except Exception:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise RuntimeError(f"the session cluster did not come up; see {logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()

    def __enter__(self) -> "SessionCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def write_conf(conf: Path, config: dict[str, str]) -> Path:
    """A Flink configuration directory: config.yaml and the distribution's console logging."""
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in config.items()))
    for name in ("log4j-console.properties", "logback-console.xml"):
        shutil.copy(FLINK_HOME / "conf" / name, conf / name)
    return conf


def serve(role: str) -> None:
    """One daemon of a session cluster in a container (compose/flink-cluster.yaml), in the foreground, logging to
    the console. The JobManager is reached at SCORESTREAM_FLINK_JOBMANAGER (default `jobmanager`), its REST API on
    8081; a TaskManager at its own address on the network, with SCORESTREAM_FLINK_SLOTS slots (default 4)."""
    if role not in ("jobmanager", "taskmanager"):
        sys.exit(f"serve jobmanager|taskmanager, not {role!r}")
    own_address = socket.gethostbyname(socket.gethostname())
    python = os.environ.get("SCORESTREAM_FLINK_PYTHON", "process")
    config = session_config(8081, 6123, int(os.environ.get("SCORESTREAM_FLINK_SLOTS", "4")),
                            jobmanager=os.environ.get("SCORESTREAM_FLINK_JOBMANAGER", "jobmanager"),
                            taskmanager=own_address, bind="0.0.0.0", python=python)
    workdir = Path(tempfile.mkdtemp(prefix="flink-"))
    conf = write_conf(workdir / "conf", config)
    script = str(FLINK_HOME / "bin" / f"{role}.sh")
    os.execvpe("bash", ["bash", script, "start-foreground"],
               os.environ | {"FLINK_CONF_DIR": str(conf)} | daemon_environment(workdir, python))


def main() -> None:
    """python -m savepoints.cluster DIR [REST_PORT] [--thread]: a session cluster until Ctrl-C (or SIGTERM);
    --thread: the jobs' Python in thread mode (faster; an upgrade needs a TaskManager of its own, see
    docs/savepoints.md). python -m savepoints.cluster serve jobmanager|taskmanager: one daemon in a container
    (see serve; SCORESTREAM_FLINK_PYTHON=thread for thread mode)."""
    if sys.argv[1:2] == ["serve"]:
        return serve(sys.argv[2] if len(sys.argv) > 2 else "")
    args = [a for a in sys.argv[1:] if a != "--thread"]
    workdir, port = Path(args[0]), int(args[1]) if len(args) > 1 else None
    python = "thread" if "--thread" in sys.argv else "process"
    cluster = SessionCluster(workdir, rest_port=port, python=python).start()
    print(f"Flink session cluster at {cluster.url}, Python in {python} mode (conf and logs in {workdir}); "
          f"Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
