"""The wire contract: every message of DESIGN.md as a frozen dataclass.

Values are JSON (orjson), the key is the request id, header names are the
constants below. `from_record()` either returns a complete message or raises
ContractError naming the field; it never builds a half-filled object.

>>> req = Request(request_id="r1", ts=1700000000000, payload={"amount": 12.5})
>>> Request.from_record(req.to_record()) == req
True
>>> Request.from_record(KafkaRecord(b"r1", b'{"request_id": "r1", "payload": {}}'))
Traceback (most recent call last):
...
scorestream.contract.ContractError: Request: field 'ts' is missing
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import orjson

# Dead-letter headers: which stage refused the record, why, and where it came from.
H_ERROR_STAGE = "error.stage"
H_ERROR_REASON = "error.reason"
H_SOURCE_TOPIC = "source.topic"
H_SOURCE_PARTITION = "source.partition"
H_SOURCE_OFFSET = "source.offset"
H_SOURCE_TIMESTAMP = "source.timestamp"
# Archive header: when the decoy wrote the copy (epoch ms).
H_ARCHIVED_AT = "archived_at"


class ContractError(ValueError):
    """A record that does not fit the contract; `field` names the culprit (None: not JSON)."""

    def __init__(self, message_type: str, field: str | None, reason: str):
        self.field = field
        where = f"field {field!r} " if field else ""
        super().__init__(f"{message_type}: {where}{reason}")


def now_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True)
class KafkaRecord:
    """A record as Kafka carries it, with where it was read from (when it was read)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None

    @classmethod
    def from_message(cls, msg: Any) -> "KafkaRecord":
        """From a confluent_kafka.Message."""
        ts_type, ts = msg.timestamp()
        return cls(msg.key(), msg.value(), tuple(msg.headers() or ()), msg.topic(),
                   msg.partition(), msg.offset(), ts if ts_type else None)

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


def _check(cls_name: str, name: str, hint: Any, value: Any) -> Any:
    """value converted to the field's type, or ContractError."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint

    def bad() -> ContractError:    # built only on failure: decoding is on every hot path
        return ContractError(cls_name, name, f"must be {getattr(hint, '__name__', hint)}, got {type(value).__name__}")

    if origin is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if origin is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if origin is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        key_t, val_t = typing.get_args(hint) or (str, Any)
        if val_t is float:
            return {k: _check(cls_name, f"{name}.{k}", float, v) for k, v in value.items()}
        return value
    if origin is tuple:  # tuple[float, ...]: a vector of numbers
        if not isinstance(value, (list, tuple)):
            raise bad()
        return tuple(_check(cls_name, f"{name}[{i}]", float, v) for i, v in enumerate(value))
    return value


_FIELDS: dict[type, tuple[tuple[str, Any, bool], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of every field of a message class, computed once per class."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        _FIELDS[cls] = tuple((f.name, hints[f.name], f.default is dataclasses.MISSING
                              and f.default_factory is dataclasses.MISSING) for f in dataclasses.fields(cls))
    return _FIELDS[cls]


class Message:
    """Base of JSON messages keyed by request_id."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def from_dict(cls, doc: Any) -> Self:
        if not isinstance(doc, dict):
            raise ContractError(cls.__name__, None, f"must be a JSON object, got {type(doc).__name__}")
        values = {}
        for name, hint, required in _fields(cls):
            if name not in doc:
                if required:
                    raise ContractError(cls.__name__, name, "is missing")
                continue
            values[name] = _check(cls.__name__, name, hint, doc[name])
            allowed = cls.choices.get(name)
            if allowed and values[name] not in allowed:
                raise ContractError(cls.__name__, name, f"must be one of {', '.join(map(str, allowed))}, got {values[name]!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, value: bytes | str | None) -> Self:
        if value is None:
            raise ContractError(cls.__name__, None, "the record has no value")
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ContractError(cls.__name__, None, f"not JSON: {exc}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_record(cls, record: KafkaRecord) -> Self:
        return cls.from_json(record.value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self)      # orjson serialises dataclasses natively, fast

    @property
    def key(self) -> bytes:
        return self.request_id.encode()

    def to_record(self) -> KafkaRecord:
        return KafkaRecord(self.key, self.to_json())


@dataclass(frozen=True)
class Request(Message):
    request_id: str
    ts: int                       # epoch ms when the producer sent it: the request's clock starts here
    payload: dict[str, Any]


@dataclass(frozen=True)
class Features(Message):
    request_id: str
    ts: int
    extractor: str                # name@version
    features: tuple[float, ...]
    extracted_by: dict[str, str] | None = None   # the extract job's deployment: {"job", "version", "deployment"}


@dataclass(frozen=True)
class Score(Message):
    choices = {"role": ("candidate", "canary")}
    request_id: str
    model: str
    version: int
    role: str
    score: float
    worker: str
    received_at: float            # epoch ms, when the worker read the features
    scored_at: float              # epoch ms, when the score was computed
    extractor: str
    host: str = ""


@dataclass(frozen=True)
class Rejection(Message):
    """A request a stage refused (its dead letter says the same): the rendezvous answers it at once."""

    request_id: str
    stage: str                    # the stage that refused it, as in its dead letter's error.stage
    reason: str                   # as in its dead letter's error.reason
    field: str                    # what failed, few values (a metric label): payload.amount, request.ts, ...
    ts: int | None = None         # the request's ts, when it had a valid one


@dataclass(frozen=True)
class Result(Message):
    request_id: str
    score: float | None           # None when the request was rejected
    model: str | None             # None when the default answered or the request was rejected
    version: int | None
    rule: str                     # preferred | fallback@<after_ms> | default | rejected
    latency_ms: float
    candidates: dict[str, float]  # name@version -> score, those that had arrived
    canary: dict[str, Any] | None  # {"score", "delta"} when the canary had scored
    policy_version: int
    error: dict[str, str] | None = None   # rejected: {"stage", "reason", "field"}, as its dead letter says
    answered_by: dict[str, str] | None = None   # the deployment that answered: {"job", "version", "deployment"}


@dataclass(frozen=True)
class Outcome(Message):
    """The truth about a request, learned later (a chargeback, a confirmed fraud): keyed by request id.

    The rendezvous joins it with every model's score of that request and rewards every model's posterior.
    """

    choices = {"label": (0, 1)}
    request_id: str
    label: int                    # 1 = fraud, 0 = not fraud; nothing else
    ts: int                       # epoch ms when the label was established


@dataclass(frozen=True)
class Control(Message):
    """Policy documents, hot-swap tokens, deployments; compacted by `name`."""

    choices = {"kind": ("policy", "token", "deployment")}
    kind: str
    name: str
    body: dict[str, Any]
    ts: int

    @property
    def key(self) -> bytes:
        return f"{self.kind}:{self.name}".encode()


@dataclass(frozen=True)
class Alert(Message):
    """A record of the canary monitor: an alert firing, or resolved. Keyed by `alert:model`, so the
    latest record per key says whether it fires (docs/canary.md)."""

    choices = {"state": ("firing", "resolved"), "kind": ("drift", "slo"), "severity": ("page", "ticket")}
    alert: str                    # canary_delta | model_drift | canary_drift | default_answers | sla | model_late
    model: str                    # name@version, or "*" for the whole system
    value: float                  # the figure that crossed (or fell back under) the threshold
    threshold: float
    window: str                   # the monitor's window it was judged on: <start ISO>+<seconds>s
    ts: int = 0                   # epoch ms when the record was written
    state: str = "firing"
    kind: str = "drift"
    severity: str = "ticket"
    first_seen: int = 0           # epoch ms of the window where it first fired
    reason: str = ""              # one sentence for on-call
    runbook: str = ""             # docs/runbook.md#<alert>

    @property
    def key(self) -> bytes:
        return f"{self.alert}:{self.model}".encode()


@dataclass(frozen=True)
class DeadLetter:
    """A bad record as received, with headers saying which stage refused it and why."""

    stage: str
    reason: str
    record: KafkaRecord

    def to_record(self) -> KafkaRecord:
        r = self.record
        extra = [(H_ERROR_STAGE, self.stage.encode()), (H_ERROR_REASON, self.reason.encode())]
        for name, v in ((H_SOURCE_TOPIC, r.topic), (H_SOURCE_PARTITION, r.partition),
                        (H_SOURCE_OFFSET, r.offset), (H_SOURCE_TIMESTAMP, r.timestamp)):
            if v is not None:
                extra.append((name, str(v).encode()))
        return KafkaRecord(r.key, r.value, r.headers + tuple(extra))

    @classmethod
    def from_record(cls, record: KafkaRecord) -> "DeadLetter":
        stage, reason = record.header(H_ERROR_STAGE), record.header(H_ERROR_REASON)
        if stage is None or reason is None:
            missing = H_ERROR_STAGE if stage is None else H_ERROR_REASON
            raise ContractError("DeadLetter", missing, "header is missing")
        ours = {H_ERROR_STAGE, H_ERROR_REASON, H_SOURCE_TOPIC, H_SOURCE_PARTITION, H_SOURCE_OFFSET, H_SOURCE_TIMESTAMP}

        def num(name: str) -> int | None:
            v = record.header(name)
            return int(v) if v is not None else None

        try:    # headers are bytes anyone may have written: a bad one is this record's error, not the reader's
            source = record.header(H_SOURCE_TOPIC)
            original = KafkaRecord(record.key, record.value, tuple(h for h in record.headers if h[0] not in ours),
                                   source.decode() if source is not None else None, num(H_SOURCE_PARTITION),
                                   num(H_SOURCE_OFFSET), num(H_SOURCE_TIMESTAMP))
            return cls(stage.decode(), reason.decode(), original)
        except ValueError as exc:       # not UTF-8, not a number (UnicodeDecodeError is a ValueError)
            raise ContractError("DeadLetter", None, f"bad header: {exc}") from None
