"""PyFlink plumbing shared by the Flink jobs: the environment and Kafka sources/sinks.

Embedded (the default), a job runs in its own local mini cluster, in PyFlink's
thread mode (Python functions embedded in the JVM through pemja). The embedded
interpreter does not see this virtualenv by itself, so its site-packages go on
PYTHONPATH before the JVM starts.

On a session cluster (`cluster`: its REST address), the job is submitted there
with its code (the project's packages, zipped, as `python.files`), the Kafka
connector and flink-python jars, and Python in process mode: one Python worker
per operator, so two versions of a job in one TaskManager (a hot swap) never
share an interpreter and its `sys.modules`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import site
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from scorestream import security
from scorestream.class_archive import ClassArchive
from scorestream.errors import UserError
from scorestream.ports import free_port
from scorestream.process import command_line, tree as process_tree
from pydantic_settings import SettingsConfigDict

from scorestream.settings import JVM_GC_ARGS, PROJECT_ROOT, StackSettings, _Settings


def connector_jar(settings: StackSettings | None = None) -> Path:
    """The Flink Kafka connector jar fetched through pom.xml."""
    settings = settings or StackSettings()
    jars = sorted((settings.jars_dir / "flink").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        raise UserError(f"the Flink Kafka connector jar is missing in {settings.jars_dir / 'flink'}: run `make jars`")
    return jars[-1]


SHIPPED_PACKAGES = ("scorestream", "extractors", "rendezvous", "models")   # what the jobs' functions import


def flink_python_jar() -> Path:
    """The jar of PyFlink's Python operators (in the distribution's opt/, not on a cluster's classpath)."""
    import pyflink
    return next((Path(pyflink.__file__).parent / "opt").glob("flink-python-*.jar"))


JOB_PACKAGES = {"extract": "extractors", "rendezvous": "rendezvous"}
SHARED_CODE = ("scorestream/flink.py", "scorestream/contract.py")      # in every job's code version


def _digest(sources: dict[str, bytes]) -> str:
    digest = hashlib.sha1()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name])
    return digest.hexdigest()[:10]


def _in_version(job: str, name: str) -> bool:
    return (name.startswith(JOB_PACKAGES[job] + "/") and name.endswith(".py")) or name in SHARED_CODE


def _version_file(job: str):
    """Whether a file of the project (its relative name) is part of `job`'s code version."""
    return lambda name: _in_version(job, name) and "__pycache__" not in name


def _folder_sources(root: Path, package: str, wanted) -> dict[str, bytes]:
    return {name: (root / name).read_bytes()
            for name in (f.relative_to(root).as_posix() for f in (root / package).rglob("*.py")) if wanted(name)}


def code_version(job: str) -> str:
    """A digest of the code the job runs (its part's folder and the shared Flink plumbing), as on disk now."""
    wanted = _version_file(job)
    return _digest(_folder_sources(PROJECT_ROOT, JOB_PACKAGES[job], wanted)
                   | _folder_sources(PROJECT_ROOT, "scorestream", wanted))


def _package_sources(package: str, wanted) -> dict[str, bytes]:
    """The files of an imported package whose relative names `wanted` accepts, read where it was imported from:
    a code archive (zip) or a folder."""
    spec = sys.modules[package].__spec__
    archive = getattr(spec.loader, "archive", None)            # a zipimporter's
    if archive is not None:
        with zipfile.ZipFile(archive) as zf:
            return {n: zf.read(n) for n in zf.namelist() if n.startswith(package + "/") and wanted(n)}
    return _folder_sources(Path(spec.origin).parent.parent, package, wanted)


_LOADED: dict[str, str | None] = {}       # job -> the version of its code this interpreter imported


def loaded_code_version(job: str) -> str | None:
    """The version of the code this interpreter imported for `job`: in thread mode a TaskManager's one
    interpreter keeps the modules the first job imported, whichever version of the code that was. Read once
    per interpreter, while the files it came from exist (Flink deletes a job's shipped files when it ends);
    None when they were gone already: not known."""
    if job not in _LOADED:
        for package in (JOB_PACKAGES[job], "scorestream"):
            __import__(package)
        sources = {}
        for package in (JOB_PACKAGES[job], "scorestream"):
            sources |= _package_sources(package, _version_file(job))
        _LOADED[job] = _digest(sources) if sources else None
    return _LOADED[job]


def check_loaded_code(job: str, version: str | None) -> None:
    """Refuse to run `job` with code other than the version it was submitted with (a TaskManager whose
    thread-mode interpreter already runs another version, or files edited between submission and start)."""
    loaded = loaded_code_version(job)
    if version and loaded and loaded != version:
        raise RuntimeError(f"{job}: this task's Python interpreter has code version {loaded} of {job} imported, not "
                           f"this deployment's {version}: a thread-mode TaskManager keeps the code it first imported "
                           f"for its life, so give the new version a TaskManager of its own (docs/savepoints.md)")


def code_archive(name: str) -> Path:
    """The project's Python packages as they are on disk now, zipped: the code a job takes to a cluster."""
    target = Path(tempfile.mkdtemp(prefix=f"scorestream-{name}-")) / "scorestream-code.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in SHIPPED_PACKAGES:
            for f in sorted((PROJECT_ROOT / package).rglob("*")):
                if f.suffix in (".py", ".yaml") and "__pycache__" not in f.parts:
                    zf.write(f, f.relative_to(PROJECT_ROOT).as_posix())
    return target


def cluster_url(cluster: str) -> str:
    """A session cluster's REST address as given (host:port, or a URL), as a URL."""
    return (cluster if "://" in cluster else f"http://{cluster}").rstrip("/")


def cluster_python_mode(cluster: str) -> str:
    """How the session cluster runs Python functions: `thread` when it says so in its configuration
    (python.execution-mode, with flink-python in its lib/: savepoints/cluster.py), else `process`."""
    try:
        with urllib.request.urlopen(f"{cluster_url(cluster)}/jobmanager/config", timeout=10) as reply:
            entries = json.load(reply)
    except (OSError, ValueError) as exc:
        raise UserError(f"the Flink cluster at {cluster} does not answer ({exc}): is it running?") from None
    mode = next((e["value"] for e in entries if e.get("key") == "python.execution-mode"), "process")
    return "thread" if mode == "thread" else "process"


def cluster_config(cluster: str, name: str, python_mode: str | None = None) -> dict[str, str]:
    """Submit to the session cluster at REST address `cluster` instead of a local mini cluster.

    Python runs as the cluster says (cluster_python_mode): in thread mode flink-python is on the cluster's
    classpath and the job ships the connector alone; in process mode the job ships flink-python too.
    python_mode: given instead of asking the cluster."""
    url = urlsplit(cluster_url(cluster))
    if not url.hostname or not url.port:
        raise UserError(f"--flink {cluster!r}: give the REST address of the cluster's JobManager, "
                        f"e.g. http://127.0.0.1:8081")
    mode = python_mode or cluster_python_mode(cluster)
    jars = (connector_jar(),) if mode == "thread" else (connector_jar(), flink_python_jar())
    return {"execution.target": "remote", "rest.address": url.hostname, "rest.port": str(url.port),
            "python.execution-mode": mode,
            # keyed state lives in the JVM; the Python worker caches it. Flink's default (1000 keys) is fewer than the
            # rendezvous holds (every request of the last SLA + grace): each event was a round trip to the JVM
            "python.state.cache-size": "100000",
            "pipeline.jars": ";".join(j.as_uri() for j in jars),
            "python.files": str(code_archive(name))}


def python_path() -> str:
    """PYTHONPATH for an embedded (thread mode) interpreter: this virtualenv's packages and the project."""
    paths = [*site.getsitepackages(), str(PROJECT_ROOT)]
    current = os.environ.get("PYTHONPATH")
    return os.pathsep.join(paths + ([current] if current else []))


def class_archive() -> ClassArchive:
    """The class data sharing archive of the Flink JVMs this virtualenv starts (made from PyFlink's jars, for
    the java its launcher runs)."""
    import pyflink
    from pyflink.pyflink_gateway_server import find_java_executable
    home = Path(pyflink.__file__).parent
    return ClassArchive(StackSettings().jars_dir / "cds", tuple(sorted([*home.glob("lib/*.jar"),
                                                                       *home.glob("opt/flink-python*.jar")])),
                        find_java_executable())


GATEWAY_MAIN = "org.apache.flink.client.python.PythonGatewayServer"   # the JVM pyflink starts


def _archive_classes_later(archive: ClassArchive, after_s: float) -> None:
    """In a daemon thread of an embedded job: once it has run after_s, make the archive from its JVM's class
    list (scorestream/class_archive.py) for the next JVMs."""
    def run() -> None:
        time.sleep(after_s)
        classpath = _jvm_classpath(os.getpid())
        if classpath:
            archive.build_apart(classpath).wait()
    threading.Thread(target=run, name="class-archive", daemon=True).start()


def _jvm_classpath(pid: int) -> str | None:
    """The -cp of the JVM that pyflink started under pid."""
    found = gateway_jvm(pid)
    return found[1][found[1].index("-cp") + 1] if found and "-cp" in found[1][:-1] else None


def gateway_jvm(pid: int) -> tuple[int, list[str]] | None:
    """The pid and command line of the JVM that pyflink started under pid (its gateway server: not another JVM
    of the tree, such as a broker that a test session started)."""
    for p in process_tree(pid):
        args = command_line(p)
        if args and args[0].endswith("java") and GATEWAY_MAIN in args:
            return p, args
    return None


def environment(config: dict[str, str] | None = None, parallelism: int = 1, name: str = "flink"):
    """A StreamExecutionEnvironment in thread mode with the Kafka connector on the classpath.

    The JVM's own log goes to <home>/logs/<name>/ (PyFlink's default is inside site-packages).
    """
    os.environ["PYTHONPATH"] = python_path()   # read by the JVM that pyflink starts next
    log_dir = StackSettings().home / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    with _jvm_args():         # the first pyflink call below starts the JVM
        from pyflink.common import Configuration
        from pyflink.datastream import StreamExecutionEnvironment

        conf = Configuration()
        settings = {
            "python.execution-mode": "thread",
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "pipeline.jars": connector_jar().as_uri(),
            "rest.port": "0",                                # several local jobs side by side (run_job picks one)
            "classloader.check-leaked-classloader": "false",  # the Kafka admin thread outlives a bounded job
        } | (config or {})
        for key, value in settings.items():
            conf.set_string(key, str(value))
        if settings.get("execution.target") == "remote":
            # getExecutionEnvironment makes a local one whatever the target: construct one that submits remotely
            from pyflink.java_gateway import get_gateway
            j_env = get_gateway().jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment(
                conf._j_configuration)
            env = StreamExecutionEnvironment(j_env)
        else:
            env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(parallelism)
    return env


@contextlib.contextmanager
def _jvm_args():
    """JVM_ARGS with the collector's options and the class archive's while pyflink starts its JVM (its launcher
    reads them), and only then: Flink's own scripts read JVM_ARGS too, for JVMs of another class path."""
    before = os.environ.get("JVM_ARGS")
    archive = class_archive().jvm_args(os.getpid()) if JobSettings().class_archive else []
    os.environ["JVM_ARGS"] = " ".join([*JVM_GC_ARGS, *archive, before or ""]).strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("JVM_ARGS", None)
        else:
            os.environ["JVM_ARGS"] = before


# our connector jar (flink-sql-connector-kafka) relocates Kafka's client: SASL login modules are named there
KAFKA_SHADED = "org.apache.flink.kafka.shaded."


def kafka_source(topic: str | list[str], group: str, bootstrap: str, start: str = "committed", bounded: bool = False,
                 properties: dict | None = None):
    """A KafkaSource of value strings. start: earliest | latest | committed (earliest when none)."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.kafka import KafkaOffsetResetStrategy, KafkaOffsetsInitializer, KafkaSource

    offsets = {
        "earliest": KafkaOffsetsInitializer.earliest,
        "latest": KafkaOffsetsInitializer.latest,
        "committed": lambda: KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST),
    }[start]()
    builder = (KafkaSource.builder().set_bootstrap_servers(bootstrap)
               .set_topics(*([topic] if isinstance(topic, str) else topic))
               .set_group_id(group).set_starting_offsets(offsets)
               .set_value_only_deserializer(SimpleStringSchema())
               .set_property("isolation.level", "read_committed"))
    for key, value in (security.java_properties(shaded=KAFKA_SHADED) | (properties or {})).items():
        builder = builder.set_property(key, str(value))
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    return builder.build()


def table_environment(env):
    """The one StreamTableEnvironment of `env` (Kafka tables in and out of a DataStream graph share it).

    Operator uids of table operators are generated from the plan: savepoints restore by them.
    """
    t_env = getattr(env, "_scorestream_table_env", None)
    if t_env is None:
        from pyflink.table import StreamTableEnvironment
        t_env = env._scorestream_table_env = StreamTableEnvironment.create(env)
        t_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    return t_env


def _kafka_table(t_env, name: str, columns: str, options: dict[str, str]) -> None:
    """A Kafka table; the client's security settings (scorestream/security.py) join its properties."""
    options = options | {f"properties.{k}": v for k, v in security.java_properties(shaded=KAFKA_SHADED).items()}
    with_ = ", ".join(f"'{k}' = '{_sql_text(v)}'" for k, v in options.items())
    t_env.execute_sql(f"CREATE TEMPORARY TABLE `{name}` ({columns}) WITH ({with_})")


def _sql_text(value) -> str:
    return str(value).replace("'", "''")


def _source_options(topics: list[str], group: str, bootstrap: str, start: str, properties: dict | None) -> dict:
    mode = {"earliest": "earliest-offset", "latest": "latest-offset", "committed": "group-offsets"}[start]
    return {"connector": "kafka", "topic": ";".join(topics), "value.format": "raw",
            "properties.bootstrap.servers": bootstrap, "properties.group.id": group,
            "properties.auto.offset.reset": "earliest", "properties.isolation.level": "read_committed",
            "scan.startup.mode": mode} | {f"properties.{k}": str(v) for k, v in (properties or {}).items()}


def kafka_partitioned_source(env, name: str, topics: list[str], group: str, bootstrap: str, start: str = "committed",
                              properties: dict | None = None):
    """Records of `topics` as rows (value, topic, partition), through the Table API's Kafka connector: the
    DataStream connector gives values only, and a swap token marks a cut per partition (savepoints/).

    start: earliest | latest | committed (earliest when none). Read committed; the value is the raw UTF-8 text.
    """
    t_env = table_environment(env)
    _kafka_table(t_env, name, "`value` STRING, `topic` STRING METADATA VIRTUAL, `partition` INT METADATA VIRTUAL",
                 _source_options(topics, group, bootstrap, start, properties))
    return t_env.to_data_stream(t_env.from_path(f"`{name}`"))


def kafka_keyed_source(env, name: str, topics: list[str], group: str, bootstrap: str, start: str = "committed",
                       properties: dict | None = None):
    """Rows (value, topic, partition) of `topics`, keyed by their Kafka key (every topic's key is the request
    id; a record without one is keyed by its value's `request_id`, else by ""), as a KeyedStream.

    The key is taken in Java (SQL), not by a Python key selector: the rows come out as (key, row), the
    shape PyFlink's own key_by builds with a Python call per record, and are keyed by field 0.
    """
    from pyflink.common import Types
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    t_env = table_environment(env)
    options = _source_options(topics, group, bootstrap, start, properties) | {
        "key.format": "raw", "key.fields": "key", "value.fields-include": "EXCEPT_KEY"}
    _kafka_table(t_env, name, "`key` STRING, `value` STRING, `topic` STRING METADATA VIRTUAL, "
                              "`partition` INT METADATA VIRTUAL", options)
    keyed = t_env.sql_query(
        # CASE, not COALESCE: Flink evaluates every argument of COALESCE, and JSON_VALUE parsed each value
        f"SELECT CASE WHEN `key` IS NULL OR `key` = '' THEN COALESCE(JSON_VALUE(`value`, '$.request_id'), '') "
        f"ELSE `key` END AS `key`, "
        f"ROW(`value`, `topic`, `partition`) AS `row` FROM `{name}`")
    row_type = Types.ROW_NAMED(["value", "topic", "partition"], [Types.STRING(), Types.STRING(), Types.INT()])
    # a RowTypeInfo, not to_data_stream's ExternalTypeInfo: PyFlink's keyed operators cast their input type to it
    stream = t_env.to_append_stream(keyed, Types.ROW_NAMED(["key", "row"], [Types.STRING(), row_type]))
    j_keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                           Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, row_type, stream)


def keyed_row_type():
    """The output type of a function whose rows go to kafka_keyed_sink: (key, value)."""
    from pyflink.common import Types
    return Types.ROW_NAMED(["key", "value"], [Types.STRING(), Types.STRING()])


def kafka_keyed_sink(env, stream, name: str, topic: str, bootstrap: str, linger_ms: int = 1) -> None:
    """Rows (key, value) of `stream` (type keyed_row_type()) to `topic`, with that Kafka key, through the Table
    API's Kafka connector; at-least-once (flushed on every checkpoint), as kafka_sink."""
    t_env = table_environment(env)
    _keyed_sink_table(t_env, name, topic, bootstrap, linger_ms)
    statements = t_env.create_statement_set()
    statements.add_insert(f"`{name}`", t_env.from_data_stream(stream))
    statements.attach_as_datastream()


def _keyed_sink_table(t_env, name: str, topic: str, bootstrap: str, linger_ms: int) -> None:
    _kafka_table(t_env, name, "`key` STRING, `value` STRING", {
        "connector": "kafka", "topic": topic, "properties.bootstrap.servers": bootstrap,
        "key.format": "raw", "key.fields": "key", "value.format": "raw", "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once", "properties.linger.ms": str(linger_ms)})


def kafka_copy(env, name: str, topics: list[str], group: str, bootstrap: str, topic: str, where: str,
               start: str = "committed", properties: dict | None = None) -> None:
    """Records of `topics` that match the SQL condition `where` (on `key` and `value`) copied to `topic` with
    their key, in Java only (a floor of a job's Kafka hop: rendezvous/floors.py)."""
    t_env = table_environment(env)
    options = _source_options(topics, group, bootstrap, start, properties)
    _kafka_table(t_env, name, "`key` STRING, `value` STRING",
                 options | {"key.format": "raw", "key.fields": "key", "value.fields-include": "EXCEPT_KEY"})
    _keyed_sink_table(t_env, f"{name}_out", topic, bootstrap, linger_ms=1)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO `{name}_out` SELECT `key`, `value` FROM `{name}` WHERE {where}")
    statements.attach_as_datastream()


def kafka_sink(topic: str, bootstrap: str, linger_ms: int = 1):
    """A KafkaSink of value strings, at-least-once (flushed on every checkpoint)."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    serializer = (KafkaRecordSerializationSchema.builder().set_topic(topic)
                  .set_value_serialization_schema(SimpleStringSchema()).build())
    builder = (KafkaSink.builder().set_bootstrap_servers(bootstrap).set_record_serializer(serializer)
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
            .set_property("linger.ms", str(linger_ms)))
    for key, value in security.java_properties(shaded=KAFKA_SHADED).items():
        builder = builder.set_property(key, value)
    return builder.build()


def attempt_number(runtime_context) -> int:
    """The task's attempt: 0, then one more each time Flink restarts it. In thread mode PyFlink's
    get_attempt_number() calls RuntimeContext.getAttemptNumber, which Flink 2 removed: ask its TaskInfo."""
    try:
        return runtime_context.get_attempt_number()
    except AttributeError:
        return runtime_context._runtime_context.getTaskInfo().getAttemptNumber()


class JobSettings(_Settings):
    """Latency knobs of the Flink jobs (SCORESTREAM_FLINK_*); the defaults are measured, see docs/benchmarks.md."""

    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_FLINK_", frozen=True, extra="ignore")
    buffer_timeout_ms: int = 5            # Flink's default of 100 ms would eat the SLA; 1 is faster only on an idle host
    bundle_size: int = 100                # Python records per bundle
    bundle_time_ms: int = 5               # longest a record waits in a bundle
    checkpoint_interval_ms: int = 5000    # source offsets are committed on checkpoints
    class_archive: bool = True            # the JVM maps its classes from an archive (scorestream/class_archive.py)
    class_archive_after_s: float = 60.0   # a job this long running makes the archive, if there is none

    def config(self) -> dict[str, str]:
        return {"python.fn-execution.bundle.size": str(self.bundle_size),
                "python.fn-execution.bundle.time": str(self.bundle_time_ms),
                "execution.checkpointing.interval": f"{self.checkpoint_interval_ms} ms"}


# how stale the REST API's metrics may be (Flink's default 10 s): a hot swap reads the sources' offsets there to
# know when a deployment has read past its swap tokens, and both versions do all the work until then. Fetched only
# when asked for, so it costs nothing between upgrades.
METRICS_FRESH = "500 ms"


def run_job(name: str, build, config: dict[str, str] | None = None, on_submitted=None, before_submit=None,
            cluster: str | None = None, log_name: str | None = None) -> None:
    """Build a job on a fresh environment with the latency settings and run it until cancelled or stopped.

    The mini cluster's REST endpoint listens on a free port of 127.0.0.1, so the job is operable through
    Flink's REST API (savepoints, stop); on_submitted(job_id, rest_url) is called once it runs (an exception
    there cancels the job). cluster: the REST address of a session cluster to submit the job to instead.
    before_submit() may return more configuration, once the JVM runs and the graph is built (a hot swap
    takes the old version's savepoint only then, so the new one has less to catch up).
    A job that ends (stopped with a savepoint) returns; SIGTERM cancels it (on a cluster: stops it with a savepoint).
    log_name: where under <home>/logs/ its JVM logs (flink.<name> by default).
    """
    settings = JobSettings()
    if cluster:
        local = cluster_config(cluster, name)
        rest_url = f"http://{local['rest.address']}:{local['rest.port']}"
    else:
        port = free_port()
        local = {"rest.port": str(port), "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1",
                 "metrics.fetcher.update-interval": METRICS_FRESH}
        rest_url = f"http://127.0.0.1:{port}"
    env = environment(settings.config() | local | (config or {}), name=log_name or f"flink.{name}")
    env.set_buffer_timeout(settings.buffer_timeout_ms)
    build(env)
    extra = before_submit() if before_submit else None
    if extra:
        from pyflink.common import Configuration
        conf = Configuration()
        for key, value in extra.items():
            conf.set_string(key, value)
        env.configure(conf)
    ready = StackSettings().home / "run" / f"flink.{name}.job"     # what a container's health check looks at
    ready.unlink(missing_ok=True)
    try:
        client = env.execute_async(name)
    except Exception as exc:            # the cluster refused the job: Flink's reason, without the Java trace
        raise UserError(f"{name}: Flink at {rest_url} did not take the job: {_cause(exc)}") from None
    job_id = str(client.get_job_id())
    if not cluster and settings.class_archive and not (archive := class_archive()).archive.exists():
        _archive_classes_later(archive, settings.class_archive_after_s)
    # wait in Python, not in a Java call, so SIGTERM is handled at once: cancel the job, then exit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    status = "gone"
    try:
        if on_submitted:
            on_submitted(job_id, rest_url)
        print(f"{name}: job {job_id} submitted, REST {rest_url}", flush=True)
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.write_text(job_id)
        while not (status := _status(client)) in ("gone", "FINISHED", "FAILED", "CANCELED"):
            time.sleep(1.0)
    finally:
        if cluster:     # through REST: the PyFlink client's JVM may be going down with us (SIGTERM to the group)
            end_on_cluster(rest_url, job_id, (config or {}).get("execution.checkpointing.savepoint-dir"))
        elif _status(client) != "gone":
            client.cancel()
    if status in ("gone", "FINISHED"):       # a job that ends shuts its mini cluster down with it
        print(f"{name}: job {job_id} ended", flush=True)
        return
    try:
        client.get_job_execution_result().result()
    except Exception as exc:                 # the cause, for the log (a savepoint that does not restore, ...)
        print(f"{name}: {str(exc)[:20000]}", flush=True)
    raise UserError(f"{name}: the job ended with status {status}")


def end_on_cluster(rest_url: str, job_id: str, savepoint_dir: str | None) -> None:
    """End the job on the session cluster unless it has ended (it outlives this process otherwise): stopped with a
    savepoint (no drain), so that its Python operators close after a finished bundle. A cancel can close them
    mid-bundle, and PyFlink's shared Python runner then fails its reference count and takes the whole TaskManager
    down with every other job on it (seen on Flink 2.2). Cancelled only if the stop does not end it in time."""
    from savepoints.rest import FlinkError, FlinkRest
    rest = FlinkRest(rest_url)
    try:
        if rest.job(job_id)["state"] in ("FINISHED", "FAILED", "CANCELED", "CANCELLING"):
            return
        if savepoint_dir:
            try:
                print(f"stopped with the savepoint {rest.savepoint(job_id, savepoint_dir, stop=True, timeout_s=20)}",
                      flush=True)
                rest.wait_state(job_id, {"FINISHED", "FAILED", "CANCELED"}, timeout_s=10)
                return
            except FlinkError as exc:
                print(f"could not stop job {job_id} with a savepoint ({exc}); cancelling it", flush=True)
        rest.cancel(job_id)
    except FlinkError as exc:
        print(f"could not end job {job_id} on {rest_url} ({exc}): cancel it there", flush=True)


def _cause(exc: Exception) -> str:
    """The innermost Java cause of a Py4J error, one line."""
    lines = [line.strip() for line in str(exc).splitlines() if "Exception:" in line or "Error:" in line]
    return (lines[-1] if lines else str(exc).splitlines()[0])[:800]


def _status(client) -> str:
    """The job's status, or "gone" once its mini cluster has shut down."""
    from py4j.protocol import Py4JJavaError
    try:
        return str(client.get_job_status().result())
    except Py4JJavaError:
        return "gone"
