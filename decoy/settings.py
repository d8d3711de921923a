"""Settings of the decoy and of replay (SCORESTREAM_DECOY_* / the CLI flags give the values)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

STAGE = "decoy"        # the stage id: metric label, log prefix, transactional.id prefix


class DecoySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCORESTREAM_DECOY_", frozen=True, extra="ignore")

    instance: str = "0"              # stable per running decoy: names its transactional.id and static group member
    group: str = "scorestream.decoy"
    batch_size: int = 5000           # records per transaction, at most
    batch_ms: int = 100              # ... or what arrived within this many ms
    metrics_port: int = 0            # 0: no /metrics endpoint
    idle_exit_s: float = 0.0         # exit after this long with nothing to archive (0: run until SIGTERM)
    transaction_timeout_s: float = 60.0    # the broker aborts a transaction open this long
    call_timeout_s: float = 20.0           # of one transactional call; retried, then the producer is replaced
    rejoin_limit_s: float = 30.0           # a consumer out of its group this long is taken for stuck and replaced

    @property
    def transactional_id(self) -> str:
        return f"scorestream.{STAGE}.{self.instance}"
