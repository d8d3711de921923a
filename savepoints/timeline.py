"""Where in an upgrade the late answers fall: the late answers per second of request time, the upgrade's
clock-stamped steps, and what each part of the system took of the CPU in that second, on one timeline.

Each part's CPU comes from its own counters (scorestream.costs), read once a second while the load runs; during
an upgrade the new deployment is its own part (`flink.<job>.next`) until the cut.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Callable

from scorestream import costs
from scorestream.process import host_busy_since, host_cpu_jiffies
from scorestream.settings import StackSettings

VERY_LATE_MS = 50               # issue 14's bound around an upgrade: no answer later than the SLA plus this
STEP = re.compile(r"(\d\d:\d\d:\d\d)\.(\d{3}) (.*)")


class CpuTrace:
    """Every part's CPU ms in each second (wall clock) while it runs, and the share of the host's CPUs taken."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings
        self.seconds: dict[int, tuple[float, dict[str, float]]] = {}     # second -> (host busy, part -> ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-trace", daemon=True)

    def __enter__(self) -> CpuTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last, host = costs.sample(self.settings), host_cpu_jiffies()
        while not self._stop.wait(1.0 - time.time() % 1.0):
            now, busy = costs.sample(self.settings), host_busy_since(host)
            host = host_cpu_jiffies()
            # a part's name may pass to another process (the new deployment takes the job's at the cut): same pid only
            ms = {part: 1000 * (cpu - last.cpu_s[part]) for part, cpu in now.cpu_s.items()
                  if last.pids.get(part) == now.pids[part]}
            self.seconds[int(time.time()) - 1] = (busy, ms)
            last = now

    def line(self, second: int) -> str:
        if second not in self.seconds:
            return ""
        busy, ms = self.seconds[second]
        workers = sum(v for p, v in ms.items() if p.startswith("score."))
        parts = sorted(((v, p) for p, v in ms.items() if not p.startswith("score.")), reverse=True)
        return (f"host {busy:4.0%} | " + " ".join(f"{p} {v:.0f}" for v, p in parts if v >= 20)
                + f" workers {workers:.0f}")

    def total_s(self, part: str) -> float:
        """CPU seconds of a part over the trace (the new deployment, `flink.<job>.next`: until the cut)."""
        return sum(ms.get(part, 0.0) for _, ms in self.seconds.values()) / 1000

    def mean(self, since: float, until: float) -> str:
        """CPU ms/s of every part, on average over the seconds in [since, until) (epoch seconds)."""
        picked = [v for s, v in self.seconds.items() if since <= s < until]
        if not picked:
            return "no samples"
        total: Counter = Counter()
        for _, ms in picked:
            total.update(ms)
        busy = sum(b for b, _ in picked) / len(picked)
        return f"host {busy:.0%} busy; " + ", ".join(f"{p} {v / len(picked):.0f}" for p, v in total.most_common())


def steps(texts: dict[str, str], day_of_ms: float) -> list[tuple[float, str]]:
    """(epoch s, 'name: step') of every clock-stamped line ('HH:MM:SS.mmm what') of the upgrades' output."""
    day = time.strftime("%Y-%m-%d", time.localtime(day_of_ms / 1000))
    out = []
    for name, text in texts.items():
        for line in text.splitlines():
            if m := STEP.match(line):
                at = time.mktime(time.strptime(f"{day} {m[1]}", "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
                out.append((at, f"{name}: {m[3][:90]}" if name else m[3][:100]))
    return out


def timeline(load, upgrade_output: dict[str, str] | None = None, cpu: CpuTrace | None = None,
             owner: Callable | None = None) -> list[str]:
    """One line per second of requests (their ts) with an answer later than the SLA, each with who answered
    (or owner(sent) when given: who owns it by the cut) and the CPU of that second, between the upgrades'
    clock-stamped steps (upgrade_output: name -> the command's output)."""
    owner = owner or (lambda s: s.answers[0][1] or "?")
    by_second: dict[int, list] = {}
    for s in load.sent.values():
        if s.answers:
            by_second.setdefault(int(s.ts // 1000), []).append((s.answers[0][0] - s.ts, s))
    rows = []
    for second, answers in by_second.items():
        late = [(x, s) for x, s in answers if x > load.sla_ms]
        if late:
            very_late = sum(1 for x, _ in late if x > load.sla_ms + VERY_LATE_MS)
            by = ", ".join(f"{d} {n}" for d, n in Counter(owner(s) for _, s in late).most_common())
            text = (f"{len(late):4d} of {len(answers)} late, {very_late:4d} later than SLA + {VERY_LATE_MS} ms, "
                    f"max {max(x for x, _ in late):.0f} ms ({by})")
            if cpu and (line := cpu.line(second)):
                text += f"\n{'':14}cpu ms: {line}"
            rows.append((second, text))
    first = min(by_second, default=0) * 1000
    rows += [(at, f"{'':10}-- {what}") for at, what in steps(upgrade_output or {}, first)]
    return [f"  {time.strftime('%H:%M:%S', time.localtime(at))}  {what}" for at, what in sorted(rows)]
