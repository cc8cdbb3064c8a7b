"""The one settings object, built once from the environment and passed in.

Every setting has a default that works for `make run`. Code deep inside the project never reads
`os.environ`; it receives a `Settings`. The README's configuration table lists each field here.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Never shown by repr() or str(): a settings object that ends up in a log or a traceback must not
# carry these. URL settings keep everything but their password.
SECRET_SETTINGS = frozenset({"admin_session_secret", "facebook_app_secret", "realtime_apps",
                             "stripe_api_key", "stripe_webhook_secret"})
URL_SETTINGS = frozenset({"database_url", "nats_url", "smtp_url"})


def without_password(url: str) -> str:
    """`url` with the password of its user info replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
    database_connect_timeout_s: float = 5.0  # opening a connection: TCP and PostgreSQL's handshake

    # --- edge ---
    edge_host: str = "127.0.0.1"
    edge_port: int = 8000
    edge_workers: int = 1
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    cors_origins: str = ""
    hsts_max_age_s: int = 0  # >0: Strict-Transport-Security on every answer (serve over https only)

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

    # --- actors and search ---
    spatial_shards: int = 4
    spatial_cell_deg: float = 0.5  # fixed lon/lat grid; see docs/decisions/0003-spatial-cells.md
    spatial_rebuild_delta: int = 512  # changes since the last STRtree build that trigger a rebuild
    spatial_shard_prefix: str = "spatial"
    presence_shards: int = 2
    presence_timeout_s: float = 90.0
    presence_flush_s: float = 5.0  # how often a presence shard writes last_seen in one batch
    presence_notify_s: float = 1.0  # how often a presence shard tells clients their cleaner came/went
    presence_shard_prefix: str = "presence"
    shard_client_max_inflight: int = 1  # Ray calls in flight per shard; the rest coalesce into the next
    # Resharding (docs/decisions/0018): the counts above only seed the layout kept in PostgreSQL.
    rebalance_grace_s: float = 5.0  # old shards answer "moved" this long after a new layout, then die
    shard_layout_wait_s: float = 10.0  # a call that got "moved" waits this long for the new layout
    # Where Ray places shard actors (README "Operating on a Ray cluster"): every shard of every
    # kind asks for one unit of `shard_resource` (empty: none, any node will do) and reserves
    # `shard_memory_mb`; SPREAD puts consecutive shards on different nodes.
    shard_scheduling: Literal["SPREAD", "DEFAULT"] = "SPREAD"
    shard_resource: str = ""  # e.g. "spotless_shard", offered by the shard nodes of ray_cluster.yaml
    shard_memory_mb: int = Field(default=0, ge=0)  # Ray's logical memory reservation per shard
    service_area_max_vertices: int = 2000
    service_area_max_km2: float = 5000.0
    search_max_hours: int = 12
    # Search ranks by a rating pulled towards this mean by this many imaginary reviews, so one 5-star
    # review does not outrank 4.9 from a hundred, and a new cleaner starts mid-table.
    search_rating_prior_mean: float = Field(default=4.0, ge=1, le=5)
    search_rating_prior_weight: int = Field(default=5, ge=0)

    # --- jobs (outbox relay, JetStream workers, scheduler, e-mail, push, images) ---
    jetstream_prefix: str = "spotless"  # streams, consumers and subjects start with it
    jobs_stream_max_age_s: int = 7 * 86400
    jobs_duplicate_window_s: int = 600  # JetStream drops a re-published event id within this
    job_max_deliveries: int = 5
    job_ack_wait_s: float = 60.0
    job_backoff_base_s: float = 1.0
    job_backoff_max_s: float = 300.0
    job_concurrency: int = 16
    job_shutdown_grace_s: float = 20.0
    relay_batch: int = 500
    relay_poll_s: float = 0.05
    scheduler_tick_s: float = 1.0
    rate_limit_prune_every_s: int = 600
    smtp_url: str = ""  # smtp://user:pass@host:587 or smtps://...; empty: write .eml files
    smtp_timeout_s: float = 10.0
    fcm_credentials_file: str = ""  # a service-account JSON; empty: push is logged, not sent
    fcm_send_url: str = "https://fcm.googleapis.com/v1/projects/{project_id}/messages:send"
    push_android_channel: str = "spotless_default"
    fcm_http_timeout_s: float = 30.0
    image_max_bytes: int = 20 * 1024 * 1024
    image_max_pixels: int = 50_000_000
    image_thumbnail_sizes: str = "160,480,1280"

    # --- realtime ---
    # JSON list of Pusher apps: {"id", "key", "secret"} plus optional limits (core/realtime.py).
    realtime_apps: str = (
        '[{"id": "1001", "key": "spotless-key", "secret": "dev-only-realtime-secret-change-me"}]'
    )
    realtime_activity_timeout_s: int = 30  # told to clients; the server pings after this idle
    realtime_pong_timeout_s: float = 15.0  # no pong within this after a ping: close with 4201
    realtime_worker_heartbeat_s: float = 10.0  # presence members of a worker silent 3x this are dropped
    realtime_auth_timestamp_tolerance_s: int = 600  # signed HTTP events API requests
    # A channel query waits this long for every live edge worker's counts, then answers without
    # the workers that have not answered (edge/realtime/census.py).
    realtime_channel_query_timeout_s: float = 1.0
    realtime_cache_ttl_s: int = 1800  # a cache channel's last event is sent to new subscribers this long (Pusher's 30 min)
    conversation_shards: int = 4
    conversation_shard_prefix: str = "conversations"
    presence_channel_shards: int = 2  # who is on each presence channel; seeds the layout as the counts above do
    presence_channel_shard_prefix: str = "presence-channels"
    chat_message_max_chars: int = 4000
    chat_recent_messages: int = 100  # per conversation, kept in its shard
    chat_push_hold_s: float = 1.0  # a message's push request waits this long, withdrawn if its recipient is watching
    chat_attachment_max_bytes: int = 10 * 1024 * 1024  # largest image sent in a chat

    # --- supply: uploads and profiles ---
    file_storage_dir: Path | None = None  # default: <data_dir>/files (storage/files.py)
    verification_document_max_bytes: int = 10 * 1024 * 1024
    profile_photo_max_bytes: int = 5 * 1024 * 1024
    upload_max_image_pixels: int = 40_000_000  # larger images are refused as decompression bombs
    verification_max_pending_documents: int = 5
    evidence_photo_max_bytes: int = 10 * 1024 * 1024  # largest completion photo
    evidence_max_photos_per_booking: int = 20
    # Above the UK National Living Wage, so the platform never advertises a rate below it.
    cleaner_min_hourly_rate_minor: int = 1300
    cleaner_max_hourly_rate_minor: int = 50_000

    # --- bookings and payments ---
    booking_max_hours: int = 12
    booking_max_extra_hours: int = 2  # a cleaner may complete with at most this many hours over the quote
    booking_min_lead_s: int = 3600  # a booking starts at least this long after it is made
    booking_max_advance_days: int = 180
    booking_request_ttl_s: int = 4 * 3600  # an unanswered request expires (or at its start)
    # A cleaner may mark a booking on the way, and start it, no earlier than this before its start.
    booking_on_the_way_lead_s: int = Field(default=3 * 3600, ge=0)
    booking_reminder_lead_s: int = 24 * 3600  # both parties are reminded this long before
    booking_final_reminder_lead_s: int = 3600  # and again this long before
    booking_take_rate_bp: int = 1500  # the platform's share of the subtotal, basis points
    booking_tax_rate_bp: int = 2000  # added to the subtotal (UK VAT), basis points
    booking_free_cancellation_s: int = 24 * 3600  # cancelling earlier than this before start is free
    booking_late_cancellation_fee_bp: int = 5000  # what a late-cancelling client pays
    booking_dispute_window_s: int = 72 * 3600  # after completion
    payments_currency: str = "GBP"
    stripe_api_key: str = ""  # empty: bookings are made without charging a card (dev only)
    stripe_api_base: str = "https://api.stripe.com"  # tests point it at tests/fakes/stripe.py
    stripe_webhook_secret: str = ""
    stripe_webhook_tolerance_s: int = 300
    stripe_http_timeout_s: float = 20.0
    stripe_onboarding_return_url: str = "https://spotless.local/cleaner/payouts/done"
    stripe_onboarding_refresh_url: str = "https://spotless.local/cleaner/payouts/retry"
    # The seller printed on invoices; VAT on them is booking_tax_rate_bp (core/invoices.py).
    invoice_seller_name: str = "Spotless Ltd"
    invoice_seller_address: str = "1 Example Street, London EC1A 1AA, United Kingdom"
    invoice_seller_vat_number: str = ""  # empty: no VAT number is printed (set it in production)
    settle_retry_base_s: int = 60  # first retry of a refused capture or release (doubles each time)
    settle_retry_max_s: int = 6 * 3600  # longest wait between retries
    settle_max_attempts: int = 10  # then the booking is left to staff
    review_max_chars: int = 2000  # longest review or reply

    # --- observability ---
    log_level: str = "INFO"
    log_json: bool = True

    @property
    def mail_path(self) -> Path:
        return self.mail_dir if self.mail_dir is not None else self.data_dir / "mail"

    @property
    def file_storage_path(self) -> Path:
        return self.file_storage_dir if self.file_storage_dir is not None else self.data_dir / "files"

    @staticmethod
    def split(value: str) -> list[str]:
        return [item.strip() for item in value.split(",") if item.strip()]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in SECRET_SETTINGS and value:
                yield name, "***"
            elif name in URL_SETTINGS and isinstance(value, str):
                yield name, without_password(value)
            else:
                yield name, value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
