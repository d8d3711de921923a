"""Where replay writes: a Parquet file (one row per scored request) or a sandbox topic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic

from decoy.record import ArchivedRequest
from scorestream import kafka
from scorestream.contract import H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TIMESTAMP, H_SOURCE_TOPIC, Request
from scorestream.errors import UserError
from scorestream.topics import TopicRegistry


class ParquetSink:
    """Rows: request_id, ts (as seen, UTC), request_ts (the producer's), source partition/offset,
    extractor, one float64 column per model named by its ref, and the payload (JSON) on request.

    The file is created with the first rows: an empty replay writes nothing.
    """

    ROWS_PER_GROUP = 65_536

    def __init__(self, path: Path, model_refs: list[str], extractor: str | None, with_payload: bool,
                 labels: dict[str, int] | None = None):
        self.path, self.model_refs, self.extractor, self.with_payload = path, model_refs, extractor, with_payload
        self.labels = labels          # request_id -> outcome: a `label` column (null: no outcome yet)
        fields = [("request_id", pa.string()), ("ts", pa.timestamp("ms", tz="UTC")), ("request_ts", pa.int64()),
                  ("source_partition", pa.int32()), ("source_offset", pa.int64()), ("extractor", pa.string())]
        fields += [(ref, pa.float64()) for ref in model_refs]
        if labels is not None:
            fields.append(("label", pa.int8()))
        if with_payload:
            fields.append(("payload", pa.string()))
        self.schema = pa.schema(fields)
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, items: list[tuple[ArchivedRequest, Request]], scores: dict[str, np.ndarray]) -> None:
        if not items:
            return
        n = len(items)
        columns = [
            pa.array([r.request_id for _, r in items], pa.string()),
            # through int64: pyarrow converts Python ints to timestamps ~100x slower
            pa.array(np.fromiter((a.original.timestamp for a, _ in items), np.int64, n)).cast(self.schema.field("ts").type),
            pa.array([r.ts for _, r in items], pa.int64()),
            pa.array([a.original.partition for a, _ in items], pa.int32()),
            pa.array([a.original.offset for a, _ in items], pa.int64()),
            pa.array([self.extractor] * n, pa.string()),
            *(pa.array(scores[ref], pa.float64()) for ref in self.model_refs),
        ]
        if self.labels is not None:
            columns.append(pa.array([self.labels.get(r.request_id) for _, r in items], pa.int8()))
        if self.with_payload:
            columns.append(pa.array([orjson.dumps(r.payload).decode() for _, r in items], pa.string()))
        self._pending.append(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self._pending_rows += n
        self.rows += n
        if self._pending_rows >= self.ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(pa.Table.from_batches(self._pending), row_group_size=self.ROWS_PER_GROUP)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()


class TopicSink:
    """Republishes the original requests (key, value bytes, headers) into a sandbox topic.

    The sandbox must not be a topic of topics.yaml: live consumers never see a
    replay. It is created (partitions as the archive) when missing. Records get
    the current time as timestamp, so the sandbox's retention does not delete
    them at once; the original position and time travel in the source.* headers.
    Not transactional: replaying the same range twice sends it twice.
    """

    def __init__(self, topic: str, registry: TopicRegistry, bootstrap: str | None = None):
        live = {t.name for t in registry} | set(registry.topics)
        if topic in live:
            raise UserError(f"--to-topic {topic} is a live topic of topics.yaml: replay into a sandbox topic "
                            "(e.g. sandbox.replay.<you>) so live consumers are not touched")
        self.topic, self.delivered, self.failed = topic, 0, 0
        self._ensure_topic(registry.name("archive"), bootstrap)
        self.producer = kafka.producer(bootstrap, **{"linger.ms": 20})

    def _ensure_topic(self, archive: str, bootstrap: str | None) -> None:
        admin = kafka.admin(bootstrap)
        existing = admin.list_topics(timeout=10).topics
        if self.topic in existing:
            return
        partitions = len(existing[archive].partitions) if archive in existing else 1
        future = admin.create_topics([NewTopic(self.topic, num_partitions=partitions, replication_factor=-1)])
        try:
            future[self.topic].result(30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise UserError(f"cannot create sandbox topic {self.topic}: {exc}") from exc

    def _delivered(self, err, _msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1

    def write(self, archived: ArchivedRequest) -> None:
        r = archived.original
        headers = [*r.headers, (H_SOURCE_TOPIC, r.topic.encode()), (H_SOURCE_PARTITION, b"%d" % r.partition),
                   (H_SOURCE_OFFSET, b"%d" % r.offset), (H_SOURCE_TIMESTAMP, b"%d" % r.timestamp)]
        while True:
            try:
                self.producer.produce(self.topic, r.value, r.key, headers=headers, on_delivery=self._delivered)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)

    def close(self) -> None:
        self.failed += self.producer.flush(60)
