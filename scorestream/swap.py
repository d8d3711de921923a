"""The swap token of a hot swap, and who owns a record around it.

The upgrade of a Flink job (savepoints/upgrade.py) runs the new version beside the
old one, both reading the same partitions, and writes a token to every partition
of the job's input topics. A record before the token of its partition belongs to
the old version, a record after it to the new one: both see the same order, so
they agree without talking to each other.

A token is a control record, not a request: it carries the header
`scorestream.control: token`, and its value is a `Control` of kind `token`:
{"kind": "token", "name": JOB, "body": {"from": OLD, "to": NEW, "upgrade": ID}, "ts": ...}.

>>> old, new = Ownership("d-old"), Ownership("d-new", predecessor="d-old")
>>> old.owns(0), new.owns(0)
(True, False)
>>> token = {"from": "d-old", "to": "d-new"}
>>> old.token(0, token), new.token(0, token)
('handed_over', 'taken_over')
>>> old.owns(0), new.owns(0), old.owns(1), new.owns(1)
(False, True, True, False)
"""

from __future__ import annotations

import time

from scorestream.contract import Control, KafkaRecord

CONTROL_HEADER = "scorestream.control"


def token_record(job: str, old: str, new: str, upgrade: str) -> KafkaRecord:
    control = Control("token", job, {"from": old, "to": new, "upgrade": upgrade}, int(time.time() * 1000))
    return KafkaRecord(control.key, control.to_json(), ((CONTROL_HEADER, b"token"),))


def is_control(headers) -> bool:
    """A record marked as control (a swap token): archived as such, never replayed, never scored."""
    return any(k == CONTROL_HEADER for k, _ in headers or ())


_KNOWN: dict[tuple[str, str, str | None], "Ownership"] = {}


def ownership(job: str, deployment: str, predecessor: str | None = None) -> "Ownership":
    """The deployment's Ownership, the same one again when Flink restarts its task in this interpreter: the
    tokens it saw may lie before the checkpoint it restores from, and are not read again (a fresh one would
    own nothing). What was answered since that checkpoint the rendezvous reads back (rendezvous/recovery.py)."""
    key = (job, deployment, predecessor)
    if key not in _KNOWN:
        _KNOWN[key] = Ownership(deployment, predecessor)
    return _KNOWN[key]


class Ownership:
    """Which partitions of a job's input a deployment answers for.

    A deployment started by an upgrade (`predecessor` set) owns a partition once its predecessor's token has
    passed on it; any deployment stops owning a partition once its own token (to a successor) has passed.
    """

    def __init__(self, deployment: str, predecessor: str | None = None):
        self.deployment, self.predecessor = deployment, predecessor
        self.taken: set[int] = set()
        self.handed: set[int] = set()

    def token(self, partition: int, body: dict) -> str | None:
        """Take note of a token; what it meant to this deployment, or None (another upgrade's token)."""
        if body.get("from") == self.deployment:
            self.handed.add(partition)
            return "handed_over"
        if self.predecessor is not None and body.get("from") == self.predecessor:
            self.taken.add(partition)
            return "taken_over"
        return None

    def owns(self, partition: int) -> bool:
        return (self.predecessor is None or partition in self.taken) and partition not in self.handed
