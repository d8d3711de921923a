"""For producers: publish a request and get its answer, matched by request id.

>>> # with the stack up:
>>> # with ScoringClient() as client:
>>> #     result = client.score({"amount": 12.5, ...}, timeout=1.0)

A request the system refuses raises RequestRejected with the reason. What can be checked
before sending is checked here, without a round trip: the request against the contract and
the payload against the extractor of the policy (rendezvous/policy.yaml unless told):

>>> check_request(Request("r1", 1, {"amount": 1.0}), get_extractor("txn@1"))
Traceback (most recent call last):
...
scorestream.client.RequestRejected: rejected by client: payload field 'avg_amount_30d' is missing
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import orjson

from extractors import ExtractError, Extractor, get_extractor
from scorestream import kafka
from scorestream.contract import ContractError, Request, Result
from scorestream.topics import TopicRegistry


class RequestNotSent(ConnectionError):
    """The client could not deliver the request to the broker (after retrying for librdkafka's
    message.timeout.ms): the system never saw it, so no answer will come."""


class RequestRejected(ValueError):
    """The system refused the request: `stage` says which part (client, extract), `reason` why,
    `field` what failed; `result` is the rendezvous's answer when it came from the system."""

    def __init__(self, stage: str, reason: str, field: str, result: Result | None = None):
        self.stage, self.reason, self.field, self.result = stage, reason, field, result
        super().__init__(f"rejected by {stage}: {reason}")

    @classmethod
    def of(cls, result: Result) -> "RequestRejected":
        error = result.error or {}
        return cls(error.get("stage", "?"), error.get("reason", "?"), error.get("field", "?"), result)


def check_request(request: Request, extractor: Extractor | None) -> None:
    """RequestRejected (stage `client`) for what the extract job would refuse: the envelope, the payload."""
    try:
        Request.from_dict(orjson.loads(request.to_json()))
        if extractor is not None:
            extractor.extract(request.payload)
    except ContractError as exc:
        raise RequestRejected("client", str(exc), f"request.{exc.field}" if exc.field else "request") from None
    except ExtractError as exc:
        raise RequestRejected("client", str(exc), "payload" if exc.field == "payload" else f"payload.{exc.field}") \
            from None
    except TypeError as exc:            # orjson: a payload value that JSON cannot carry
        raise RequestRejected("client", f"payload is not JSON: {exc}", "payload") from None


def policy_extractor() -> Extractor:
    """The extractor the default policy file names (what `scorestream up` runs unless told otherwise)."""
    from rendezvous.policy import Policy
    return get_extractor(Policy.load().extractor)


def assigned_consumer(topic: str, bootstrap: str | None = None, from_beginning: bool = False) -> Consumer:
    """A consumer on every partition of topic, positioned now: at the start, or at the current end."""
    consumer = kafka.consumer(f"scorestream.follow.{uuid.uuid4().hex[:8]}", bootstrap)
    partitions = kafka.partitions(consumer, topic)
    # explicit end offsets, not OFFSET_END: that one resolves at the first fetch and could skip a result
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING if from_beginning else
                                    kafka.watermarks(consumer, topic, p)[1]) for p in partitions])
    return consumer


def follow(consumer: Consumer, stop: threading.Event | None = None, idle_s: float | None = None,
           each_turn: Callable[[], Any] | None = None) -> Iterator[Result]:
    """Results as they arrive, until stop is set or nothing came for idle_s; closes the consumer at the end.
    each_turn is called at least every 0.1 s, results or not.

    No consumer group is joined and nothing is committed: following is read-only.
    """
    last = time.monotonic()
    try:
        while (stop is None or not stop.is_set()) and (idle_s is None or time.monotonic() - last < idle_s):
            if each_turn is not None:
                each_turn()
            for msg in kafka.consume_ready(consumer, 1000, 0.1):
                if msg.error():
                    continue
                last = time.monotonic()
                try:
                    yield Result.from_json(msg.value())
                except ContractError:
                    continue
    finally:
        consumer.close()


class ScoringClient:
    """Publishes requests and resolves their results; thread-safe, one results reader in the background.

    extractor: checks payloads before sending; None takes the default policy's, False checks the envelope only
    (for a system that runs another extractor than rendezvous/policy.yaml names). send_timeout_s: how long a
    request is retried while the broker is unreachable before its future fails with RequestNotSent
    (librdkafka's message.timeout.ms; 300 s unless given).
    """

    def __init__(self, bootstrap: str | None = None, registry: TopicRegistry | None = None,
                 extractor: Extractor | None | bool = None, send_timeout_s: float | None = None):
        self.extractor = policy_extractor() if extractor is None else (extractor or None)
        registry = registry or TopicRegistry.load()
        self.requests_topic = registry.name("requests")
        timeout = {} if send_timeout_s is None else {"message.timeout.ms": int(send_timeout_s * 1000)}
        self.producer = kafka.producer(bootstrap, **{"linger.ms": 0}, **timeout)
        self.pending: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        consumer = assigned_consumer(registry.name("results"), bootstrap)
        self.reader = threading.Thread(target=self._read, args=(consumer,), daemon=True)
        self.reader.start()

    def _read(self, consumer: Consumer) -> None:
        # the producer's delivery reports are served here too: a request that could not be sent fails its future
        for result in follow(consumer, self.stop, each_turn=lambda: self.producer.poll(0)):
            with self.lock:
                future = self.pending.pop(result.request_id, None)
            if future is not None:
                future.set_result(result)

    def submit(self, payload: dict[str, Any], request_id: str | None = None) -> Future:
        """Publish one request; its future resolves to its Result (RequestRejected raised here, before
        sending, for what the client can check itself)."""
        request = Request(request_id or uuid.uuid4().hex, int(time.time() * 1000), payload)
        check_request(request, self.extractor)
        future: Future = Future()
        with self.lock:
            self.pending[request.request_id] = future
        kafka.produce(self.producer, self.requests_topic, request.to_record(),
                      on_delivery=lambda err, _msg: err is None or self._not_sent(request.request_id, err))
        self.producer.poll(0)
        return future

    def _not_sent(self, request_id: str, err) -> None:
        with self.lock:
            future = self.pending.pop(request_id, None)
        if future is not None:
            future.set_exception(RequestNotSent(f"request {request_id} was not delivered to {self.requests_topic}: "
                                                f"{err.str()}; the system never saw it: publish it again"))

    def score(self, payload: dict[str, Any], timeout: float = 1.0) -> Result:
        """The answer to one request; RequestRejected when the system refused it (at once, with the
        reason), RequestNotSent when it could not be delivered, TimeoutError when no answer came within
        timeout seconds."""
        request_id = uuid.uuid4().hex
        future = self.submit(payload, request_id)
        try:
            result = future.result(timeout)
        finally:
            with self.lock:
                self.pending.pop(request_id, None)
        if result.rule == "rejected":
            raise RequestRejected.of(result)
        return result

    def close(self) -> None:
        self.stop.set()
        self.producer.flush(10)
        self.reader.join(5)

    def __enter__(self) -> "ScoringClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
