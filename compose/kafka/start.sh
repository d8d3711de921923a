#!/bin/bash
# One KRaft node (broker + controller) for the compose system. The settings follow the
# embedded broker's (scorestream/broker.py), with two client listeners: INTERNAL for the
# containers (kafka:9092) and EXTERNAL for the host (published on 127.0.0.1).
set -euo pipefail
DATA=/var/lib/kafka/data
CONF=/var/lib/kafka/server.properties
cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=INTERNAL://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093,EXTERNAL://0.0.0.0:9094
advertised.listeners=INTERNAL://${KAFKA_ADVERTISED_HOST}:9092,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED}
controller.listener.names=CONTROLLER
listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
log.dirs=$DATA
auto.create.topics.enable=false
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.io.threads=2
num.network.threads=1
controlled.shutdown.enable=false
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=750
PROPS
cat > /var/lib/kafka/log4j2.properties <<'LOG'
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
LOG
CP='/opt/kafka/libs/*'
if [ ! -f "$DATA/meta.properties" ]; then
    # a random cluster id that does not start with '-' (the storage tool would take it for an option)
    ID=$(python3 -c 'import base64,uuid
while (c := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"): pass
print(c)')
    java -cp "$CP" kafka.tools.StorageTool format -t "$ID" -c "$CONF"
fi
exec java "-Xmx$KAFKA_HEAP" "-Xms$KAFKA_HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile=/var/lib/kafka/log4j2.properties -cp "$CP" kafka.Kafka "$CONF"
