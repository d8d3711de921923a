"""A small client of Flink's REST API (the standard library's urllib: a handful of JSON calls).

Savepoints and stops are asynchronous in Flink: a POST returns a trigger id, and
the operation's outcome is polled at .../savepoints/<trigger id>.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from scorestream.errors import UserError


class FlinkError(UserError):
    """Flink refused or failed an operation; the message carries Flink's own reason."""


@dataclass(frozen=True)
class Checkpoint:
    id: int
    trigger_ms: int
    size_bytes: int
    path: str
    is_savepoint: bool


class FlinkRest:
    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url.rstrip("/"), timeout_s

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = "; ".join(json.loads(detail).get("errors", [detail]))
            except ValueError:
                pass
            raise FlinkError(f"Flink at {self.url} refused {method} {path}: {detail.strip()[:2000]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise FlinkError(f"Flink at {self.url} is unreachable ({exc}): is the job or cluster running?") from None
        return json.loads(text) if text else {}

    def reachable(self) -> bool:
        try:
            self._call("GET", "/config")
            return True
        except FlinkError:
            return False

    def overview(self) -> dict:
        """The cluster: slots total and available, jobs by state, Flink version."""
        return self._call("GET", "/overview")

    def jobs(self) -> list[dict]:
        """Every job the JobManager knows: jid, name, state, start-time."""
        return self._call("GET", "/jobs/overview")["jobs"]

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def failures(self, job_id: str) -> list[dict]:
        """The job's exception history, newest first: each failure that made Flink restart (or fail) it."""
        return self._call("GET", f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])

    def failure_reason(self, job_id: str) -> str | None:
        """The newest failure of the job in a line: a Python error raised in a task as its class and message."""
        for entry in self.failures(job_id):
            trace = entry.get("stacktrace", "")
            python = re.search(r"<class '(\w+)'>: ([^\n]+)", trace)
            return (f"{python.group(1)}: {python.group(2)}" if python else trace.split("\n", 1)[0])[:600]
        return None

    def plan(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}/plan")["plan"]

    def last_checkpoint(self, job_id: str) -> Checkpoint | None:
        """The latest completed checkpoint or savepoint of the job, None before the first."""
        latest = (self._call("GET", f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("completed")
        if not latest:
            return None
        return Checkpoint(latest["id"], latest["latest_ack_timestamp"] or latest["trigger_timestamp"],
                          latest.get("checkpointed_size") or latest.get("state_size", 0),
                          latest.get("external_path", ""), latest.get("is_savepoint", False))

    def savepoint(self, job_id: str, directory: str, stop: bool = False, timeout_s: float = 120.0) -> str:
        """Take a savepoint into `directory` (a file: URI or path); with stop=True stop the job with it
        (no drain: draining would fire every pending timer). Returns the savepoint's path."""
        if stop:
            trigger = self._call("POST", f"/jobs/{job_id}/stop", {"targetDirectory": directory, "drain": False})
        else:
            trigger = self._call("POST", f"/jobs/{job_id}/savepoints",
                                 {"target-directory": directory, "cancel-job": False, "formatType": "CANONICAL"})
        return self._wait(f"/jobs/{job_id}/savepoints/{trigger['request-id']}", timeout_s)

    def _wait(self, path: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._call("GET", path)
            if status["status"]["id"] == "COMPLETED":
                op = status.get("operation") or {}
                if "failure-cause" in op:
                    cause = op["failure-cause"]
                    raise FlinkError(f"the savepoint failed: {cause.get('class', '')}: "
                                     f"{(cause.get('stack-trace') or '').splitlines()[0] if cause.get('stack-trace') else ''}")
                return op["location"]
            time.sleep(0.2)
        raise FlinkError(f"no savepoint after {timeout_s:.0f}s ({path}); the job goes on")

    def cancel(self, job_id: str) -> None:
        self._call("PATCH", f"/jobs/{job_id}?mode=cancel")

    def wait_state(self, job_id: str, states: set[str], timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.job(job_id)["state"]
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.2)


def _source_vertex(job: dict, table: str) -> str:
    return next(v["id"] for v in job["vertices"] if v["name"].startswith(f"Source: {table}"))


class SourceProgress:
    """How far a job's Kafka source has read, from Flink's own source metrics (per subtask, summed)."""

    def __init__(self, rest: FlinkRest, job_id: str, table: str):
        self.rest, self.job_id = rest, job_id
        self.vertex = _source_vertex(rest.job(job_id), table)

    def _values(self, suffixes: tuple[str, ...]) -> dict[str, float]:
        path = f"/jobs/{self.job_id}/vertices/{self.vertex}/metrics"
        names = [m["id"] for m in self.rest._call("GET", path) if m["id"].endswith(suffixes)]
        if not names:
            return {}
        got = self.rest._call("GET", path + "?get=" + ",".join(names))
        return {m["id"]: float(m["value"]) for m in got if m.get("value") not in (None, "")}

    def pending_records(self) -> float | None:
        values = self._values((".pendingRecords",))
        return sum(values.values()) if values else None

    def offsets(self, topic: str) -> dict[int, int]:
        """The offset of the last record read, per partition of topic (only partitions read from so far)."""
        marker = f".topic.{topic.replace('.', '_')}.partition."
        out = {}
        for name, value in self._values((".currentOffset",)).items():
            if marker in name:
                out[int(name.split(marker)[1].split(".")[0])] = int(value)
        return out
