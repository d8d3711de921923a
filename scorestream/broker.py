"""The embedded Apache Kafka broker (KRaft, no ZooKeeper): one node, or a local cluster of three or more.

Jars come from pom.xml (`make jars`); data lives under <home>/kafka (a cluster's
node N under <home>/kafka/nodeN) and is formatted on first start. Node N
listens on port + 2(N - 1), its controller on the port after. Every node of a
cluster is broker and controller; internal topics keep three copies and two
must acknowledge a write (docs/operations.md).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from scorestream import secured, security
from scorestream.errors import UserError
from scorestream.process import ManagedProcess
from scorestream.settings import JVM_GC_ARGS, PROJECT_ROOT, StackSettings

PLAINTEXT_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""

BROKER_PROPERTIES = """\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
log.dirs={data_dir}
# topics come from topics.yaml only: a misspelt name fails instead of appearing
auto.create.topics.enable=false
num.partitions=4
# internal topics: as many copies as nodes (up to 3), a write needs two of three; few partitions start faster
offsets.topic.replication.factor={replication}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min_isr}
default.replication.factor={replication}
min.insync.replicas={min_isr}
# consumers join at once instead of waiting for more members
group.initial.rebalance.delay.ms=0
# the embedded broker shares two cores with the whole system: fewer request threads than
# Kafka's defaults (8 I/O, 3 network) switch less (docs/benchmarks.md)
num.io.threads=2
num.network.threads=1
{lone_node}"""

# A lone node has no other replica to hand its partitions to: its controlled shutdown only fences it, and in that
# moment it answers Metadata with no brokers and no leaders, which makes librdkafka forget every broker it knew
# (its clients then never reconnect; docs/operations.md). Stopped unfenced, its next start waits for its old
# session to expire before it may register again: 3 s, not Kafka's 9 (a restart in 6 s, not 13). A cluster's
# nodes keep Kafka's defaults and hand their leaders over.
LONE_NODE_PROPERTIES = """\
controlled.shutdown.enable=false
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=750
"""

SECURED_MARK = "scorestream-secured"     # in the data folder of a broker made with --secure

LOG4J2_PROPERTIES = """\
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
"""


def java_binary() -> str:
    """The java of PATH, checked to be 17 or newer."""
    java = shutil.which("java")
    if java is None:
        raise UserError("Java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless) and retry")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise UserError(f"Kafka 4 needs Java 17+, found: {out.splitlines()[0] if out else 'unknown'}")
    return java


def ensure_jars(settings: StackSettings) -> Path:
    """The broker's jar folder, fetched through Maven when missing."""
    kafka_jars = settings.jars_dir / "kafka"
    if any(kafka_jars.glob("kafka_2.13-*.jar")):
        return kafka_jars
    if shutil.which("mvn") is None:
        raise UserError(f"Kafka jars missing in {kafka_jars} and Maven (mvn) not found: install maven and run `make jars`")
    cmd = ["mvn", "--quiet", "--batch-mode", "-P", "kafka", "dependency:copy-dependencies",
           f"-Djars.dir={settings.jars_dir}"]
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if done.returncode != 0 or not any(kafka_jars.glob("kafka_2.13-*.jar")):
        raise UserError(f"fetching the Kafka jars failed ({' '.join(cmd)}):\n{done.stdout[-2000:]}")
    return kafka_jars


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def broker_answers(bootstrap: str, timeout_s: float = 1.0, brokers: int = 1, config: dict | None = None) -> bool:
    """The (first) broker of bootstrap answers, and its metadata lists at least `brokers` brokers.
    config: the client's security settings (default: this client's, scorestream.security)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    try:  # a plain TCP probe first: librdkafka would log every refused connection
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    config = security.client_properties() if config is None else config
    admin = AdminClient(config | {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000),
                                  "log_level": 0})
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers) >= max(1, brokers)
    except Exception:  # KafkaException while the broker is coming up
        return False


def cluster_id() -> str:
    """A random KRaft cluster id. Never one that starts with "-" (1 in 64 would): the storage tool would take it
    for an option, as Kafka's own Uuid.randomUuid() knows."""
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cid


class Broker:
    """Start, stop and look at the embedded broker, or node `node` of a local cluster of `nodes`."""

    def __init__(self, settings: StackSettings, node: int = 1, nodes: int = 1):
        self.settings, self.node, self.nodes = settings, node, nodes
        self.name = "kafka" if nodes == 1 else f"kafka.{node}"
        self.process = ManagedProcess(self.name, settings.home)
        self.dir = settings.home / "kafka" if nodes == 1 else settings.home / "kafka" / f"node{node}"

    @property
    def port(self) -> int:
        return self.settings.kafka_port + 2 * (self.node - 1)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process.pid() is not None

    def start(self) -> float:
        """Start and wait until the broker answers; returns the seconds it took."""
        began = time.monotonic()
        self.launch()
        self.wait_ready(began)
        return time.monotonic() - began

    def launch(self) -> None:
        """Start the process, without waiting: the nodes of a cluster wait for each other (a quorum)."""
        java = java_binary()
        jars = ensure_jars(self.settings)
        port = self.port
        for taken in (p for p in (port, port + 1) if not port_is_free(p)):
            raise UserError(f"port {taken} on 127.0.0.1 is taken: stop what uses it, or pick another "
                            f"port with --port / SCORESTREAM_KAFKA_PORT (node N uses port + 2(N - 1) and the "
                            f"port after for its controller)")
        props = self._write_config(port)
        classpath = f"{jars}/*"
        if not (self.dir / "data" / "meta.properties").exists():
            self._format(java, classpath, props)
        elif self.settings.secure != (self.dir / "data" / SECURED_MARK).exists():
            made = "with" if not self.settings.secure else "without"
            raise UserError(f"the Kafka data in {self.dir / 'data'} was made {made} --secure: start it as it was made "
                            f"(`scorestream up{' --secure' if made == 'with' else ''}`), or use another home "
                            f"(SCORESTREAM_HOME) for the other kind; a broker never changes between the two")
        # a fixed heap, as Kafka's own start script sets: grown from a small start, G1 kept a young
        # generation so small that it collected every ~0.7 s at 500 requests/s (docs/benchmarks.md)
        heap = self.settings.kafka_heap
        self.process.start([
            java, f"-Xmx{heap}", f"-Xms{heap}", *JVM_GC_ARGS,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp", classpath, "kafka.Kafka", str(props),
        ])

    def wait_ready(self, began: float) -> None:
        """Until this broker answers and sees every node of its cluster; UserError after ready_timeout_s."""
        deadline = began + self.settings.ready_timeout_s
        config = security.read_properties(secured.properties_file(self.settings.home, secured.ADMIN)) \
            if self.settings.secure else {}
        while not broker_answers(self.bootstrap, brokers=self.nodes, config=config):
            if not self.running():
                raise UserError(f"the Kafka broker {self.name} exited during start; its log ({self.process.log_file}) "
                                f"ends:\n{self.process.log_tail()}")
            if time.monotonic() > deadline:
                self.process.stop(timeout_s=5)
                raise UserError(f"the Kafka broker {self.name} did not answer on {self.bootstrap} within "
                                f"{self.settings.ready_timeout_s:.0f}s; see {self.process.log_file}")
            time.sleep(0.2)

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)

    def _write_config(self, port: int) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        base = self.settings.kafka_port
        voters = ",".join(f"{n}@127.0.0.1:{base + 2 * (n - 1) + 1}" for n in range(1, self.nodes + 1))
        listeners = (secured.broker_properties(self.settings.home, port, port + 1) if self.settings.secure
                     else PLAINTEXT_LISTENERS.format(port=port, controller_port=port + 1))
        props.write_text(listeners + BROKER_PROPERTIES.format(
            node=self.node, voters=voters, data_dir=self.dir / "data",
            replication=min(self.nodes, 3), min_isr=2 if self.nodes >= 3 else 1,
            lone_node=LONE_NODE_PROPERTIES if self.nodes == 1 else ""))
        (self.dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        return props

    def _format(self, java: str, classpath: str, props: Path) -> None:
        cmd = [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(props)]
        if self.settings.secure:    # the broker's own user must exist before it starts (brokers log in as it)
            admin = secured.properties_file(self.settings.home, secured.ADMIN)
            cmd += secured.scram_arguments({secured.ADMIN: secured.password_of(admin)})
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"formatting the Kafka data folder failed: {done.stdout}{done.stderr}")
        if self.settings.secure:
            (self.dir / "data" / SECURED_MARK).write_text("made by scorestream up --secure\n")

    def _cluster_id(self) -> str:
        """One id for every node of a cluster, kept beside their data; a new one for a single broker."""
        if self.nodes == 1:
            return cluster_id()
        path = self.settings.home / "kafka" / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(cluster_id())
        return path.read_text().strip()


class Cluster:
    """The embedded Kafka: `nodes` brokers started together (1: the single broker of before)."""

    def __init__(self, settings: StackSettings, nodes: int | None = None):
        self.settings = settings
        self.nodes = [Broker(settings, n, nodes or settings.brokers) for n in range(1, (nodes or settings.brokers) + 1)]

    @classmethod
    def found(cls, settings: StackSettings) -> "Cluster":
        """The cluster whose pid files are in <home>/run (what `down` and `status` look at), else settings'."""
        run = settings.home / "run"
        nodes = len(list(run.glob("kafka.*.pid"))) if run.exists() else 0
        return cls(settings, nodes or (1 if (run / "kafka.pid").exists() else settings.brokers))

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.nodes)

    @property
    def process(self) -> ManagedProcess:
        return self.nodes[0].process

    def running(self) -> bool:
        return all(b.running() for b in self.nodes)

    def start(self) -> float:
        """Start the nodes not running, all at once (a quorum needs a majority), then wait for each; seconds."""
        began = time.monotonic()
        try:
            for broker in self.nodes:
                if not broker.running():
                    broker.launch()
            for broker in self.nodes:
                broker.wait_ready(began)
        except UserError:
            self.stop()                 # no half cluster left behind
            raise
        return time.monotonic() - began

    def active_controller(self) -> int | None:
        """The node id of the KRaft quorum's leader (the active controller) as a running node last recorded it
        in its quorum-state file; None when no node knows one."""
        for broker in self.nodes:
            if not broker.running():
                continue
            try:
                state = json.loads((broker.dir / "data" / "__cluster_metadata-0" / "quorum-state").read_text())
            except (OSError, ValueError):
                continue
            if state.get("leaderId", -1) > 0:
                return state["leaderId"]
        return None

    def stop(self) -> list[str]:
        """Stop every node; the names of those that ran."""
        return [b.name for b in self.nodes if b.stop()]
