"""The parts `up` starts: every worker is a static group member named as its part."""

from scorestream import stack
from scorestream.settings import StackSettings


def test_every_worker_is_a_static_member_named_as_its_part(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORESTREAM_TOPIC_PREFIX", "sandbox.")
    workers = [p for p in stack.system_parts(StackSettings(home=tmp_path)) if p.args[0] == "worker"]
    assert workers
    for part in workers:
        assert part.args[part.args.index("--instance-id") + 1] == f"sandbox.{part.name}"
