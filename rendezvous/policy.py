"""The rendezvous policy ops edit (rendezvous/policy.yaml), parsed and validated.

An invalid policy is refused with the line and the reason, before anything runs:

>>> Policy.from_yaml("version: 1\\nsla_ms: 100\\narms: []\\ndefault: {score: 0}\\n")
Traceback (most recent call last):
...
rendezvous.policy.PolicyError: policy line 3: arms: name at least one model
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scorestream.errors import UserError

DEFAULT_PATH = Path(__file__).parent / "policy.yaml"
OUTCOME_HORIZON_S = 30.0      # how long after a request its outcome is still joined with its scores
DISCOUNT = 0.9999             # forgetting per outcome: evidence capped at 10,000 outcomes
MAX_SLA_MS = 86_400_000       # a day: deadlines beyond make no scoring sense (and must fit Flink's timers)
MAX_HORIZON_S = 2_592_000     # 30 days, the retention of scoring.outcomes


class PolicyError(UserError):
    def __init__(self, line: int | None, reason: str):
        self.line = line
        super().__init__(f"policy line {line}: {reason}" if line else f"policy: {reason}")


@dataclass(frozen=True)
class Arm:
    model: str                    # name@version
    max_share: float = 1.0        # most of the answers this arm may give (preferred or cascade)


@dataclass(frozen=True)
class Fallback:
    after_ms: float
    use: tuple[str, ...]

    @property
    def rule(self) -> str:
        return f"fallback@{self.after_ms:g}ms"


@dataclass(frozen=True)
class Policy:
    version: int
    sla_ms: float
    arms: tuple[Arm, ...]
    fallback: tuple[Fallback, ...]
    default_score: float
    canary: str | None = None
    extractor: str = "txn@1"
    outcome_horizon_s: float = OUTCOME_HORIZON_S
    discount: float = DISCOUNT

    @property
    def models(self) -> set[str]:
        """Every model the policy names: arms, cascade and canary."""
        named = {a.model for a in self.arms} | {m for f in self.fallback for m in f.use}
        return named | ({self.canary} if self.canary else set())

    @property
    def deadlines_ms(self) -> tuple[float, ...]:
        """When the job must look again at an unanswered request: each cascade step, then the SLA."""
        return tuple(f.after_ms for f in self.fallback) + (self.sla_ms,)

    @classmethod
    def load(cls, path: Path = DEFAULT_PATH, known_models: set[str] | None = None) -> "Policy":
        return cls.from_yaml(Path(path).read_text(), known_models)

    @classmethod
    def from_yaml(cls, text: str, known_models: set[str] | None = None) -> "Policy":
        try:
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise PolicyError(mark.line + 1 if mark else None, f"not YAML: {exc}") from None
        if root is None or not isinstance(root, yaml.MappingNode):
            raise PolicyError(1, "must be a mapping of version, sla_ms, arms, fallback, default")
        return _Parser(known_models).policy(root)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sla_ms": self.sla_ms, "extractor": self.extractor,
                **({"canary": self.canary} if self.canary else {}),
                "arms": [{"model": a.model, "max_share": a.max_share} for a in self.arms],
                "fallback": [{"after_ms": f.after_ms, "use": list(f.use)} for f in self.fallback],
                "default": {"score": self.default_score},
                "outcome_horizon_s": self.outcome_horizon_s, "discount": self.discount}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], known_models: set[str] | None = None) -> "Policy":
        return cls.from_yaml(yaml.safe_dump(doc), known_models)


class _Parser:
    """Walks the YAML nodes so every error can name its line."""

    def __init__(self, known_models: set[str] | None):
        self.known = known_models

    def policy(self, root: yaml.MappingNode) -> Policy:
        fields = self._mapping(root)
        for name in ("version", "sla_ms", "arms", "default"):
            if name not in fields:
                raise PolicyError(root.start_mark.line + 1, f"{name} is missing")
        version = self._number(fields["version"], "version", int)
        sla = self._number(fields["sla_ms"], "sla_ms", float)
        if not 0 < sla <= MAX_SLA_MS:
            raise PolicyError(self._line(fields["sla_ms"]), f"sla_ms must be positive, at most {MAX_SLA_MS} (a day)")
        arms = tuple(self._arm(n) for n in self._sequence(fields["arms"], "arms"))
        if not arms:
            raise PolicyError(self._line(fields["arms"]), "arms: name at least one model")
        cascade = tuple(self._fallback(n) for n in self._sequence(fields.get("fallback"), "fallback"))
        last = 0.0
        for node, step in zip(self._sequence(fields.get("fallback"), "fallback"), cascade):
            if step.after_ms <= last or step.after_ms >= sla:
                raise PolicyError(self._line(node), f"after_ms {step.after_ms:g} must be above {last:g} (the step "
                                  f"before) and below sla_ms {sla:g}: the cascade runs in increasing time within the SLA")
            last = step.after_ms
        default = self._mapping(fields["default"])
        if "score" not in default:
            raise PolicyError(self._line(fields["default"]), "default needs a score: the answer at sla_ms")
        canary = self._model(fields["canary"]) if "canary" in fields else None
        extractor = self._scalar(fields["extractor"], "extractor") if "extractor" in fields else "txn@1"
        horizon = OUTCOME_HORIZON_S
        if "outcome_horizon_s" in fields:
            horizon = self._number(fields["outcome_horizon_s"], "outcome_horizon_s", float)
            if not 0 < horizon <= MAX_HORIZON_S:
                raise PolicyError(self._line(fields["outcome_horizon_s"]), "outcome_horizon_s must be positive, at "
                                  f"most {MAX_HORIZON_S} (30 days, the retention of the outcomes)")
        discount = DISCOUNT
        if "discount" in fields:
            discount = self._number(fields["discount"], "discount", float)
            if not 0 < discount <= 1:
                raise PolicyError(self._line(fields["discount"]), "discount must be in (0, 1]: 1 forgets nothing")
        return Policy(version, sla, arms, cascade, self._number(default["score"], "default.score", float),
                      canary, extractor, horizon, discount)

    def _arm(self, node) -> Arm:
        fields = self._mapping(node)
        if "model" not in fields:
            raise PolicyError(self._line(node), "an arm needs a model")
        share = self._number(fields["max_share"], "max_share", float) if "max_share" in fields else 1.0
        if not 0 < share <= 1:
            raise PolicyError(self._line(fields["max_share"]), "max_share must be in (0, 1]")
        return Arm(self._model(fields["model"]), share)

    def _fallback(self, node) -> Fallback:
        fields = self._mapping(node)
        for name in ("after_ms", "use"):
            if name not in fields:
                raise PolicyError(self._line(node), f"a fallback step needs {name}")
        use = tuple(self._model(n) for n in self._sequence(fields["use"], "use"))
        if not use:
            raise PolicyError(self._line(fields["use"]), "use: name at least one model")
        return Fallback(self._number(fields["after_ms"], "after_ms", float), use)

    def _model(self, node) -> str:
        ref = self._scalar(node, "model")
        name, _, version = ref.partition("@")
        if not name or not version.isdigit():
            raise PolicyError(self._line(node), f"{ref!r} is not name@version")
        if self.known is not None and ref not in self.known:
            raise PolicyError(self._line(node), f"unknown model {ref!r}; the registry has: "
                              f"{', '.join(sorted(self.known)) or 'nothing'}")
        return ref

    def _mapping(self, node) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise PolicyError(self._line(node), "expected a mapping")
        fields = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise PolicyError(self._line(key), "keys must be names, not lists or mappings")
            fields[key.value] = value
        return fields

    def _sequence(self, node, what: str) -> list:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise PolicyError(self._line(node), f"{what} must be a list")
        return node.value

    def _scalar(self, node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise PolicyError(self._line(node), f"{what} must be a single value")
        return node.value

    def _number(self, node, what: str, kind: type):
        """A finite number of at most 15 digits: every figure of a policy ends up in JSON and in Flink's timers."""
        try:
            number = kind(self._scalar(node, what))
            if math.isfinite(number) and abs(number) < 1e15:
                return number
        except ValueError:
            pass
        raise PolicyError(self._line(node), f"{what} must be a {kind.__name__}, finite and below 1e15, "
                          f"got {node.value!r}")

    @staticmethod
    def _line(node) -> int:
        return node.start_mark.line + 1
