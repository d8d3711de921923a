"""Who may do what on a secured Kafka: topics.yaml's `access` as SCRAM users and ACLs (`up --secure`).

Each part is a user of its own with the least it needs: the topics it reads and writes, its consumer
groups and transactional ids. Everything else is refused (the broker allows nothing without an ACL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion)

from scorestream.errors import UserError
from scorestream.settings import KafkaSettings
from scorestream.topics import TopicRegistry

SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    user: str
    read: tuple[str, ...] = ()           # topic ids
    write: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()         # name prefixes
    describe: tuple[str, ...] = ()       # group name prefixes it may look at (members), not join
    transactions: tuple[str, ...] = ()
    create: tuple[str, ...] = ()         # topic name prefixes


def load(path: Path | None = None) -> list[Grant]:
    """The grants of topics.yaml, the shared read-only groups added to each."""
    path = path or KafkaSettings().topics_file
    access = yaml.safe_load(Path(path).read_text()).get("access") or {}
    shared = tuple(access.get("shared_groups") or ())
    grants = []
    for user, spec in (access.get("users") or {}).items():
        unknown = set(spec) - {"read", "write", "groups", "describe", "transactions", "create"}
        if unknown:
            raise UserError(f"{path}: access of {user!r} has unknown keys {', '.join(sorted(unknown))}")
        grants.append(Grant(user, tuple(spec.get("read", ())), tuple(spec.get("write", ())),
                            tuple(spec.get("groups", ())) + shared, tuple(spec.get("describe", ())),
                            tuple(spec.get("transactions", ())), tuple(spec.get("create", ()))))
    return grants


def bindings(grants: list[Grant], registry: TopicRegistry, prefix: str | None = None) -> list[AclBinding]:
    """The ACLs of the grants; topic ids become names, prefixes take SCORESTREAM_TOPIC_PREFIX."""
    prefix = KafkaSettings().topic_prefix if prefix is None else prefix

    def allow(user, kind, name, pattern, operation):
        return AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
    acls = []
    for g in grants:
        acls += [allow(g.user, ResourceType.TOPIC, registry.name(t), ResourcePatternType.LITERAL, AclOperation.READ)
                 for t in g.read]
        acls += [allow(g.user, ResourceType.TOPIC, registry.name(t), ResourcePatternType.LITERAL, AclOperation.WRITE)
                 for t in g.write]
        acls += [allow(g.user, ResourceType.GROUP, prefix + name, ResourcePatternType.PREFIXED, AclOperation.READ)
                 for name in g.groups]
        acls += [allow(g.user, ResourceType.GROUP, prefix + name, ResourcePatternType.PREFIXED, AclOperation.DESCRIBE)
                 for name in g.describe]
        acls += [allow(g.user, ResourceType.TRANSACTIONAL_ID, prefix + name, ResourcePatternType.PREFIXED,
                       AclOperation.WRITE) for name in g.transactions]
        acls += [allow(g.user, ResourceType.TOPIC, prefix + name, ResourcePatternType.PREFIXED, AclOperation.ALL)
                 for name in g.create]
    return acls


def apply(admin: AdminClient, grants: list[Grant], registry: TopicRegistry, passwords: dict[str, str]) -> int:
    """Create (or reset) each granted user's SCRAM credential and its ACLs; returns the number of ACLs.
    Creating an ACL that exists changes nothing, so this runs on every `up --secure`."""
    users = [g.user for g in grants if g.user in passwords]
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts = [UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in users]
    for user, future in admin.alter_user_scram_credentials(upserts).items():
        future.result(timeout=30)
    acls = bindings(grants, registry)
    for binding, future in admin.create_acls(acls, request_timeout=30).items():
        future.result(timeout=30)
    return len(acls)
