"""The one settings object, built once from the environment and passed in.

Every setting has a default that works for `make run`. Code deep inside the project never reads
`os.environ`; it receives a `Settings`. The README's configuration table lists each field here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPOTLESS_", frozen=True, extra="ignore")

    # --- infrastructure; empty means "start the embedded one" (spotless dev / tests) ---
    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "SPOTLESS_DATABASE_URL")
    )
    nats_url: str = Field(default="", validation_alias=AliasChoices("NATS_URL", "SPOTLESS_NATS_URL"))
    ray_address: str = Field(
        default="", validation_alias=AliasChoices("RAY_ADDRESS", "SPOTLESS_RAY_ADDRESS")
    )
    ray_namespace: str = "spotless"
    data_dir: Path = Path(".spotless")
    embedded_pg_port: int = 54329
    embedded_nats_port: int = 42229
    database_pool_max: int = 10

    # --- edge ---
    edge_host: str = "127.0.0.1"
    edge_port: int = 8000
    edge_workers: int = 1
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    cors_origins: str = ""

    # --- admin ---
    admin_host: str = "127.0.0.1"
    admin_port: int = 8001
    admin_session_secret: str = "dev-only-admin-session-secret-change-me"

    # --- accounts ---
    password_hash_time_cost: int = 2
    password_hash_memory_kib: int = 19_456
    password_min_length: int = 10
    token_ttl_days: int = 0  # 0: personal access tokens do not expire
    email_verification_ttl_s: int = 48 * 3600
    password_reset_ttl_s: int = 3600
    login_rate_per_ip: int = 30
    login_rate_per_email: int = 10
    register_rate_per_ip: int = 20
    rate_window_s: int = 60

    # --- mail (the jobs issue adds SMTP; the dev mailbox is a folder of .eml files) ---
    mail_from: str = "Spotless <no-reply@spotless.local>"
    mail_dir: Path | None = None  # default: <data_dir>/mail

    # --- social sign-in (provider endpoints are settings so tests use local fakes) ---
    google_client_ids: str = ""
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    google_issuers: str = "https://accounts.google.com,accounts.google.com"
    apple_client_ids: str = ""
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"
    apple_issuer: str = "https://appleid.apple.com"
    facebook_app_id: str = ""
    facebook_app_secret: str = ""
    facebook_graph_url: str = "https://graph.facebook.com"
    oauth_http_timeout_s: float = 5.0
    jwks_cache_ttl_s: int = 3600

    # --- observability ---
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def mail_path(self) -> Path:
        return self.mail_dir if self.mail_dir is not None else self.data_dir / "mail"

    @staticmethod
    def split(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
