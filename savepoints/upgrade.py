"""Hot swap of a Flink job: the code on disk now runs beside the running version, from its savepoint, and a
swap token on every partition of the job's input marks the cut (scorestream.swap).

1. the new deployment starts with the old one's command line and environment, `--takes-over-from OLD`, at idle
   scheduling priority (SCHED_IDLE, its session's autogroup at nice 19): its JVM starts and its graph is built;
   then a savepoint of the running (old) deployment is taken (the old one goes on running) and the new one starts
   from it: it reads the same partitions from the savepoint's offsets on and answers nothing yet;
2. a new version that fails (its savepoint does not restore, it crashes) is stopped here: the old one never
   stopped answering;
3. once the new one runs and has caught up at idle priority, it goes on at low priority (normal threads in an
   autogroup at nice 10); once it has caught up again and its JIT compilers have all but settled, it gets normal
   priority, but for its compilers (SCHED_IDLE), and a token goes to every partition of the input topics;
4. when the old one has read past every token, it still answers what it owns (the requests before the cut)
   for up to the SLA, plus a grace; then it is stopped, and the new one is the job's current deployment.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from savepoints.registry import Deployment, JobHome, new_deployment_id
from savepoints.rest import FlinkRest, SourceProgress
from scorestream import kafka, swap
from scorestream.errors import UserError
from scorestream.flink import code_version
from scorestream.process import (ManagedProcess, command_line, cpu_seconds, host_busy_since, host_cpu_jiffies,
                                 jit_cpu_seconds, set_scheduler)
from scorestream.settings import StackSettings
from scorestream.topics import TopicRegistry

SOURCES = {"rendezvous": ("rendezvous_events", ("requests", "scores", "rejections")),
           "extract": ("extract_requests", ("requests",))}
CUT_TOPIC = "requests"          # the records a deployment owns are requests; tokens among scores only pass
READY_TIMEOUT_S = 360.0         # each wait for the new version (on what the answering system leaves)
IDLE_READY_S = 3.0
CAUGHT_UP_RECORDS = 200         # ready: the new deployment's source is this close to the end, or to where the
                                # running one is (a saturated system lags by more)
JIT_SETTLE_MAX_S = 90           # after catching up, wait this long at most for its JIT compilers to settle
JIT_SETTLE_WINDOW_S = 3
JIT_SETTLED_CPU = 0.03          # settled: compilers under this share of a core over the window
STARVED_WINDOW_S = 20
STARVED_CPU = 0.1               # starved at idle priority: the new version got under this share of a core
CUT_READY_NICE = 10             # autogroup nice from caught up at idle to the cut: a session at 0 weighs 9x as much
BUSY_LOOK_S = 2.0               # the plan looks at the host's CPUs this long
ROOMY = 0.7                     # busier than this share, the new version's start takes from the answers: say so
START_CPU_S = "60-95"           # CPU-seconds a new rendezvous took before the cut (docs/savepoints.md, figures)


@dataclass
class Plan:
    job: str
    old: Deployment
    new_deployment: str
    new_version: str
    argv: list[str]
    env: dict[str, str]
    tokens: dict[str, int]      # topic name -> partitions
    wait_ms: float              # SLA + grace after the old one read its last token
    host_busy: float = 0.0      # share of the host's CPUs taken (by anything) while the plan was made

    def lines(self) -> list[str]:
        return [f"job {self.job}: deployment {self.old.deployment} (code {self.old.version}, "
                f"Flink job {self.old.flink_job_id}) runs now",
                f"1. start deployment {self.new_deployment} (code {self.new_version} as on disk now) beside it",
                f"2. savepoint of {self.old.deployment} into {JobHome(StackSettings().home, self.job).dir}, "
                f"without stopping it; {self.new_deployment} starts from it",
                "3. swap tokens to " + ", ".join(f"{t} ({n} partitions)" for t, n in self.tokens.items()),
                f"4. stop {self.old.deployment} {self.wait_ms:.0f} ms (SLA + grace) after it read its last token",
                self.room()]

    def room(self) -> str:
        """Whether the host has the CPU for a second deployment until the cut: without it, answers come late."""
        if self.host_busy <= ROOMY:
            return f"the host's CPUs are {self.host_busy:.0%} busy: there is idle CPU for the new version's start"
        return (f"warning: the host's CPUs are {self.host_busy:.0%} busy. The new version starts and catches up "
                f"at idle priority, on what the answering system leaves (a new rendezvous took {START_CPU_S} "
                "CPU-seconds before the cut): that can take minutes, and if it gets under a tenth of a core it "
                "goes on at normal priority, and answers will come later than the SLA until the cut. Upgrade at a "
                "quieter time, or give the host more cores")


@dataclass
class Report:
    savepoint: str = ""
    savepoint_s: float = 0.0
    savepoint_bytes: int = 0
    new_ready_s: float = 0.0
    cut_ms: int = 0
    token_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    old_stopped_s: float = 0.0
    new: Deployment | None = None


class UpgradeLock:
    """One upgrade of a job at a time (an flock on <home>/savepoints/<job>/upgrade.lock)."""

    def __init__(self, home: JobHome):
        home.dir.mkdir(parents=True, exist_ok=True)
        self.path = home.dir / "upgrade.lock"

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            self.file.close()
            raise UserError(f"an upgrade of this job is under way (pid {holder}); nothing was changed") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.close()


def _proc_argv_env(pid: int) -> tuple[list[str], dict[str, str]]:
    env = dict(e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in e)
    return command_line(pid), {k.decode(): v.decode() for k, v in env.items()}


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _without(argv: list[str], *names: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in names:
            skip = True
        else:
            out.append(a)
    return out


def plan(job: str, grace_ms: float = 1000.0) -> Plan:
    """What an upgrade of `job` would do; UserError when the job does not run."""
    settings = StackSettings()
    home = JobHome(settings.home, job)
    old = home.current()
    proc = ManagedProcess(f"flink.{job}", settings.home)
    pid = proc.pid()
    rest = FlinkRest(old.rest) if old else None
    if old is None or pid is None or not rest.reachable() or rest.job(old.flink_job_id)["state"] != "RUNNING":
        raise UserError(f"the {job} job is not running, nothing to upgrade: start it with `scorestream up`")
    argv, env = _proc_argv_env(pid)
    before = host_cpu_jiffies()
    time.sleep(BUSY_LOOK_S)
    busy = host_busy_since(before)
    from rendezvous.policy import DEFAULT_PATH, Policy
    sla_ms = Policy.load(Path(_option(argv, "--policy") or DEFAULT_PATH)).sla_ms
    registry = TopicRegistry.load(prefix=env.get("SCORESTREAM_TOPIC_PREFIX", ""))
    admin = kafka.admin(env.get("SCORESTREAM_BOOTSTRAP_SERVERS"))
    tokens = {}
    for topic_id in SOURCES[job][1]:
        name = registry.name(topic_id)
        tokens[name] = len(kafka.partitions(admin, name))
    return Plan(job, old, new_deployment_id(), code_version(job), _without(argv, "--restore", "--deployment-id",
                "--takes-over-from"), env, tokens, sla_ms + grace_ms, busy)


def run(p: Plan, say=print) -> Report:
    """Carry out the plan; UserError (nothing cut over, the old deployment answering) if the new one fails."""
    if shutil.which("chrt") is None:
        raise UserError("the upgrade starts the new version under `chrt` (util-linux), which is not on PATH: "
                        "install util-linux; nothing was changed")
    settings = StackSettings()
    home = JobHome(settings.home, p.job)
    report = Report()
    old_rest = FlinkRest(p.old.rest)
    new_proc = ManagedProcess(f"flink.{p.job}.next", settings.home)
    new_proc.log_file.unlink(missing_ok=True)
    handoff = home.dir / f"next-{p.new_deployment}.savepoint"
    t0 = time.monotonic()
    say(f"starting deployment {p.new_deployment} at idle priority")
    # SCHED_IDLE while it starts and catches up: any thread of the answering system that wakes takes the core
    # from it at once (a nice value only lowers its share, and the old version's answers waited behind it)
    new_proc.start(["chrt", "--idle", "0", *p.argv, "--restore", f"wait:{handoff}", "--deployment-id",
                    p.new_deployment, "--takes-over-from", p.old.deployment], env=p.env)
    _schedule(new_proc.pid(), os.SCHED_IDLE)        # its session's autogroup too, or it takes a session's share
    # on a session cluster (--flink) the job runs in the cluster's TaskManager, not in this process: nothing to watch
    priority = _StartPriority(new_proc, say, watch="--flink" not in p.argv)
    try:
        _wait_log(new_proc, "waiting for the savepoint", p, old_rest, priority)
        t1 = time.monotonic()
        report.savepoint = old_rest.savepoint(p.old.flink_job_id, home.dir.resolve().as_uri()).removeprefix("file:")
        report.savepoint_s = time.monotonic() - t1
        report.savepoint_bytes = sum(f.stat().st_size for f in Path(report.savepoint).rglob("*") if f.is_file())
        say(f"savepoint in {report.savepoint_s:.1f}s, {report.savepoint_bytes / 1024:,.1f} KiB: {report.savepoint}")
        handoff.write_text(report.savepoint)
        priority.restart()          # it waited for the savepoint, idle by design
        new = _wait_ready(home, new_proc, p, old_rest, priority)
        # caught up at idle priority; there its compilers look settled only because they get no CPU, and it
        # falls behind whenever the answering system is busy. Until the cut, a low priority that keeps it up
        # and lets it compile what it runs, so that at the cut it is current and fast (at normal priority its
        # catching up and compiling took the host for seconds, with hundreds of answers late)
        if not priority.starved:        # (a starved one was told it goes on at normal priority)
            say(f"deployment {p.new_deployment} caught up at idle priority; until the cut at low priority "
                f"(threads at normal, its autogroup at nice {CUT_READY_NICE})")
            _schedule(new_proc.pid(), os.SCHED_OTHER, autogroup_nice=CUT_READY_NICE)
        priority.watching = False
        compiled_s = _wait_compiled(new_proc.pid())
        new = _wait_ready(home, new_proc, p, old_rest, priority)     # still caught up after it
        # from the cut on, it answers; its JIT compilers go on at idle priority, so that the code they have yet
        # to compile does not take the cores from the answers
        _schedule(new_proc.pid(), os.SCHED_OTHER, jit_compilers=os.SCHED_IDLE)
    except BaseException:
        new_proc.stop()
        raise
    finally:
        handoff.unlink(missing_ok=True)
    report.new, report.new_ready_s = new, time.monotonic() - t0
    say(f"deployment {new.deployment} (Flink job {new.flink_job_id}) runs and has caught up "
        f"after {report.new_ready_s:.1f}s (its JIT compilers settled in {compiled_s:.1f}s of that)")

    report.token_offsets = _write_tokens(p)
    report.cut_ms = int(time.time() * 1000)
    say("swap tokens written: " + "; ".join(f"{t} {o}" for t, o in report.token_offsets.items()))

    cut_topic = next(t for t in p.tokens if t.endswith(CUT_TOPIC))
    _wait_past_tokens(old_rest, p.old.flink_job_id, p.job, cut_topic, report.token_offsets[cut_topic], "old")
    _wait_past_tokens(FlinkRest(new.rest), new.flink_job_id, p.job, cut_topic, report.token_offsets[cut_topic], "new")
    say(f"both deployments read past the tokens; {p.old.deployment} answers what it owns for {p.wait_ms:.0f} ms more")
    time.sleep(p.wait_ms / 1000)
    t0 = time.monotonic()
    old_proc = ManagedProcess(f"flink.{p.job}", settings.home)
    _schedule(old_proc.pid(), os.SCHED_IDLE)     # it has answered all it owns: its shutdown waits for idle CPU
    old_proc.stop()
    report.old_stopped_s = time.monotonic() - t0
    # the new deployment is now the job's: its process and log take the stage's names
    old_proc.log_file.replace(old_proc.log_file.with_name(f"flink.{p.job}.{p.old.deployment}.log"))
    new_proc.log_file.replace(old_proc.log_file)
    new_proc.pid_file.replace(old_proc.pid_file)
    home.make_current(new)
    say(f"deployment {p.old.deployment} stopped; {new.deployment} is the {p.job} job now")
    return report


def _schedule(pid: int | None, policy: int, jit_compilers: int | None = None,
              autogroup_nice: int | None = None) -> None:
    """Every thread of the part (pid and its descendants: a job's JVM is a child of its Python) under the
    scheduling policy; its JIT compiler threads under `jit_compilers`, if given; its autogroup at
    `autogroup_nice` (by default 19 under SCHED_IDLE, else 0)."""
    if pid is None:
        return
    try:
        set_scheduler(pid, policy, jit_compilers, autogroup_nice)
    except PermissionError:
        if policy == os.SCHED_IDLE:
            return        # best effort: the old one is stopped next anyway
        raise UserError("cannot give the new version its normal scheduling priority back (leaving SCHED_IDLE "
                        "needs root, CAP_SYS_NICE or an RLIMIT_NICE of 20); it was stopped, nothing was cut "
                        "over") from None


def _wait_compiled(pid: int | None) -> float:
    """Wait (at most JIT_SETTLE_MAX_S) until the new JVM's JIT compilers are nearly idle: code they compile
    after the cut takes cores from the answers (C2 took 30-50 % of a core for 35 s after a cut, with most
    answers of those seconds late)."""
    t0 = time.monotonic()
    if pid is None:
        return 0.0
    samples = deque([jit_cpu_seconds(pid)], maxlen=JIT_SETTLE_WINDOW_S + 1)     # one a second
    while time.monotonic() - t0 < JIT_SETTLE_MAX_S:
        time.sleep(1.0)
        samples.append(jit_cpu_seconds(pid))
        if len(samples) == samples.maxlen and samples[-1] - samples[0] <= JIT_SETTLED_CPU * JIT_SETTLE_WINDOW_S:
            break
    return time.monotonic() - t0


class _StartPriority:
    """The new version starts at SCHED_IDLE, but a host with no idle CPU (a system that takes both cores) gives
    it next to none: its start would never end, and the upgrade would time out. Once it got under STARVED_CPU of
    a core over STARVED_WINDOW_S, it goes on at normal priority, and the command says so: its start then takes
    CPU from the answers."""

    def __init__(self, proc: ManagedProcess, say, watch: bool = True) -> None:
        self.proc, self.say, self.watching = proc, say, watch
        self.starved = False
        self.restart()

    def restart(self) -> None:
        self.samples: deque[tuple[float, float]] = deque()
        self.last = 0.0

    def check(self) -> None:
        now, pid = time.monotonic(), self.proc.pid()
        if not self.watching or pid is None or now - self.last < 1.0:
            return
        self.last = now
        self.samples.append((now, cpu_seconds(pid)))
        while now - self.samples[0][0] > STARVED_WINDOW_S:
            t, cpu = self.samples.popleft()
            got = self.samples[-1][1] - cpu
            if 0 <= got < STARVED_CPU * (now - t):      # (less than before: a process of it ended, the wait says why)
                _schedule(pid, os.SCHED_OTHER)
                self.watching, self.starved = False, True       # at normal priority from now on
                self.say(f"the host has no idle CPU for the new version (it got {got:.1f} CPU-seconds in "
                         f"{now - t:.0f}s at idle priority): it goes on at normal priority, and answers may come "
                         "later until the cut")
                return


def _wait_log(proc: ManagedProcess, line: str, p: Plan, old_rest: FlinkRest, priority: _StartPriority) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while line not in proc.log_tail(50):
        priority.check()
        if proc.pid() is None:
            raise UserError(f"the new version of {p.job} failed to start: {_reason(proc, p, old_rest)}; "
                            f"{p.old.deployment} goes on answering, nothing was cut over (log {proc.log_file})")
        if time.monotonic() > deadline:
            raise UserError(f"the new version of {p.job} did not start in {READY_TIMEOUT_S:.0f}s; stopped it; "
                            f"{p.old.deployment} goes on answering, nothing was cut over (log {proc.log_file})")
        time.sleep(0.2)


def _wait_ready(home: JobHome, proc: ManagedProcess, p: Plan, old_rest: FlinkRest,
                priority: _StartPriority) -> Deployment:
    deadline = time.monotonic() + READY_TIMEOUT_S
    new, running_since = None, None
    old_source = None
    while time.monotonic() < deadline:
        priority.check()
        if proc.pid() is None:
            raise UserError(f"the new version of {p.job} failed to start: {_reason(proc, p, old_rest)}; "
                            f"{p.old.deployment} goes on answering, nothing was cut over (log {proc.log_file})")
        new = new or home.find(p.new_deployment)
        if new is not None:
            rest = FlinkRest(new.rest)
            try:
                job = rest.job(new.flink_job_id)
                if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
                    running_since = running_since or time.monotonic()
                    pending = SourceProgress(rest, new.flink_job_id, SOURCES[p.job][0]).pending_records()
                    old_source = old_source or SourceProgress(old_rest, p.old.flink_job_id, SOURCES[p.job][0])
                    behind = old_source.pending_records() or 0.0
                    # an idle source reports no backlog at all: caught up, once it has run a little
                    if (pending is not None and pending <= CAUGHT_UP_RECORDS + behind) or (
                            pending is None and time.monotonic() - running_since > IDLE_READY_S):
                        return new
            except UserError:
                pass
        time.sleep(0.5)
    raise UserError(f"the new version of {p.job} was not ready after {READY_TIMEOUT_S:.0f}s; stopped it; "
                    f"{p.old.deployment} goes on answering, nothing was cut over (log {proc.log_file})")


def _reason(proc: ManagedProcess, p: Plan, old_rest: FlinkRest) -> str:
    """Why the new version did not start; a savepoint that does not match names the operator."""
    log = proc.log_tail(400)
    # the job's own error message may come wrapped over lines (the console wraps it): match across them
    unmapped = re.search(r"Cannot map checkpoint/savepoint state for operator (\w+)", " ".join(log.split()))
    if unmapped:
        op = unmapped.group(1)
        nodes = {n["id"]: n["description"] for n in old_rest.plan(p.old.flink_job_id)["nodes"]}
        name = nodes.get(op, "an operator the new code no longer has (its uid changed?)")
        return (f"the savepoint does not match the new code: the state of operator {op} ({name[:120]}) "
                f"has no operator to restore into")
    errors = [line for line in log.splitlines() if "Error" in line or "Exception" in line]
    return errors[-1].strip().removeprefix("error: ")[:600] if errors else "it exited; see its log"


def _write_tokens(p: Plan) -> dict[str, dict[int, int]]:
    producer = kafka.producer(p.env.get("SCORESTREAM_BOOTSTRAP_SERVERS"))
    record = swap.token_record(p.job, p.old.deployment, p.new_deployment, f"{p.old.deployment}>{p.new_deployment}")
    offsets: dict[str, dict[int, int]] = {t: {} for t in p.tokens}
    failures = []

    def delivered(err, msg):
        if err:
            failures.append(str(err))
        else:
            offsets[msg.topic()][msg.partition()] = msg.offset()

    for topic, partitions in p.tokens.items():
        for partition in range(partitions):
            producer.produce(topic, record.value, record.key, partition=partition, headers=list(record.headers),
                             on_delivery=delivered)
    if producer.flush(30) or failures:
        raise UserError(f"swap tokens not all written ({failures or 'timeout'}); both deployments run: "
                        f"run the upgrade again to finish the cut")
    return offsets


def _wait_past_tokens(rest: FlinkRest, job_id: str, job: str, topic: str, tokens: dict[int, int], which: str,
                      timeout_s: float = 60.0) -> None:
    progress = SourceProgress(rest, job_id, SOURCES[job][0])
    deadline = time.monotonic() + timeout_s
    while True:
        read = progress.offsets(topic)
        if all(read.get(p, -1) >= o for p, o in tokens.items()):
            return
        if time.monotonic() > deadline:
            raise UserError(f"the {which} deployment did not read past the swap tokens in {timeout_s:.0f}s "
                            f"(read {read}, tokens {tokens}); both still run")
        time.sleep(0.05)
