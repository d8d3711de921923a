"""One archived request: the original record untouched, plus where and when it was seen.

The archive keeps the original key, value bytes and headers, appends the
`source.*` headers and `archived_at`, and carries the original Kafka timestamp
as its own, so `offsets_for_times` on the archive finds requests by the time
they were seen.

>>> original = KafkaRecord(b"r1", b'{"x": 1}', (("trace", b"t-7"),), "scoring.requests", 2, 41, 1700000000000)
>>> archived = ArchivedRequest(original, archived_at=1700000000123).to_record()
>>> [name for name, _ in archived.headers]
['trace', 'source.topic', 'source.partition', 'source.offset', 'source.timestamp', 'archived_at']
>>> back = ArchivedRequest.from_record(archived)
>>> back.original == original and back.archived_at == 1700000000123
True
"""

from __future__ import annotations

from dataclasses import dataclass

from scorestream.contract import (H_ARCHIVED_AT, H_SOURCE_OFFSET, H_SOURCE_PARTITION, H_SOURCE_TIMESTAMP,
                                  H_SOURCE_TOPIC, ContractError, KafkaRecord)

_OURS = (H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET, H_SOURCE_TIMESTAMP, H_ARCHIVED_AT)


@dataclass(frozen=True)
class ArchivedRequest:
    original: KafkaRecord      # as read from scoring.requests, with its topic/partition/offset/timestamp
    archived_at: int           # epoch ms when the decoy copied it

    def headers(self) -> list[tuple[str, bytes | None]]:
        """The original headers followed by ours (hot path: called once per archived record)."""
        r = self.original
        return [*r.headers, (H_SOURCE_TOPIC, r.topic.encode()), (H_SOURCE_PARTITION, b"%d" % r.partition),
                (H_SOURCE_OFFSET, b"%d" % r.offset), (H_SOURCE_TIMESTAMP, b"%d" % (r.timestamp or 0)),
                (H_ARCHIVED_AT, b"%d" % self.archived_at)]

    def to_record(self) -> KafkaRecord:
        r = self.original
        return KafkaRecord(r.key, r.value, tuple(self.headers()), timestamp=r.timestamp)

    @classmethod
    def from_record(cls, record: KafkaRecord) -> "ArchivedRequest":
        """The original request back from an archive record; ContractError if a decoy header is missing.

        Our headers are the last five: an original header that happens to share
        a name with ours stays with the original.
        """
        headers = record.headers
        tail = headers[-len(_OURS):]
        if len(headers) < len(_OURS) or tuple(name for name, _ in tail) != _OURS:
            raise ContractError("ArchivedRequest", None, "the decoy's source.* / archived_at headers are missing")
        try:
            topic, partition, offset, ts, archived_at = (v.decode() for _, v in tail)
            original = KafkaRecord(record.key, record.value, headers[:-len(_OURS)], topic, int(partition),
                                   int(offset), int(ts))
            return cls(original, int(archived_at))
        except (AttributeError, ValueError) as exc:
            raise ContractError("ArchivedRequest", None, f"bad decoy header: {exc}") from None
