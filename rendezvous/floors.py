"""Floors of the rendezvous job's CPU, for `python -m rendezvous.bench --floors` (docs/benchmarks.md).

Each reads what the job reads (rendezvous.job.KEYED_TOPICS, keyed in Java by request id), forwards
every request to a results topic of its own and does nothing else, so that beside the job on the same traffic
each shows what one layer of the job costs:

- java: the Kafka source, the key and the sink, no Python (a SQL copy of the requests);
- python: + a Python call per record (a keyed process function that forwards the requests);
- python_state: + the job's state pattern: its pickled value state read and written on every record, one
  processing-time timer per request that clears it.

The rest, up to the job itself, is the job's own work: parse, bandit, policy, metrics, its second timer.
"""

from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

from scorestream import flink, kafka

KINDS = ("java", "python", "python_state")
REQUEST_MARK = '"payload"'      # only a request has a payload (rendezvous.job.parse)
CLEAR_AFTER_MS = 100


class Forward(KeyedProcessFunction):
    def __init__(self, with_state: bool):
        self.with_state = with_state

    def open(self, runtime_context) -> None:
        if self.with_state:
            self.state = runtime_context.get_state(ValueStateDescriptor("request", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, row, ctx):
        value = row[0]
        if self.with_state:
            self.state.update((self.state.value() or ()) + (len(value),))
        if REQUEST_MARK in value:
            if self.with_state:
                timers = ctx.timer_service()
                timers.register_processing_time_timer(timers.current_processing_time() + CLEAR_AFTER_MS)
            yield Row(ctx.get_current_key()[0], value)

    def on_timer(self, timestamp, ctx):
        self.state.clear()


def build(env, kind: str, topics: list[str], group: str, bootstrap: str, results: str) -> None:
    """The floor `kind` reading `topics` (the job's four keyed topics) from their newest offsets into `results`."""
    properties = kafka.gathered_fetch(java=True)        # as the job's source
    if kind == "java":
        flink.kafka_copy(env, "floor", topics, group, bootstrap, results, start="latest", properties=properties,
                         where=f"POSITION('{REQUEST_MARK}' IN `value`) > 0")
        return
    events = flink.kafka_keyed_source(env, "floor_events", topics, group, bootstrap, start="latest",
                                      properties=properties)
    forwarded = events.process(Forward(with_state=kind == "python_state"), output_type=flink.keyed_row_type())
    flink.kafka_keyed_sink(env, forwarded.name(f"floor_{kind}"), "floor_results", results, bootstrap)
