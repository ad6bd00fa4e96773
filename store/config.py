"""Settings, read once from the environment and `.env` (pydantic-settings).

Lives in `store` because every layer needs it and imports point
bot -> agent -> tools -> store. Every field here is listed in `.env.example`.
Secrets are `SecretStr` so they never show up in a repr, a log line or an error.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "claude-sonnet-4-6"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore",
        # `DISPATCH_HOME=` copied from .env.example means "the default", not "here".
        env_ignore_empty=True,
    )

    # The model
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_env("ANTHROPIC_API_KEY"))
    anthropic_base_url: str | None = Field(None, validation_alias=_env("ANTHROPIC_BASE_URL"))
    model: str = Field(DEFAULT_MODEL, validation_alias=_env("DISPATCH_MODEL"))
    max_tokens: int = Field(4096, validation_alias=_env("DISPATCH_MAX_TOKENS"))
    model_retries: int = Field(3, validation_alias=_env("DISPATCH_MODEL_RETRIES"))
    model_timeout: float = Field(120.0, validation_alias=_env("DISPATCH_MODEL_TIMEOUT"))

    # Telegram front end
    telegram_bot_token: SecretStr | None = Field(None, validation_alias=_env("TELEGRAM_BOT_TOKEN"))
    telegram_api_url: str = Field("https://api.telegram.org", validation_alias=_env("TELEGRAM_API_URL"))
    telegram_owners_raw: str = Field("", validation_alias=_env("DISPATCH_TELEGRAM_OWNERS"))

    # Where things live
    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("dispatch", appauthor=False)),
        validation_alias=_env("DISPATCH_HOME"),
    )
    roots_raw: str = Field("", validation_alias=_env("DISPATCH_ROOTS"))
    # Not in the repr: a PostgreSQL URL carries its password (user:password@host).
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"), repr=False)

    # Who and when
    owner_name: str = Field("the owner", validation_alias=_env("DISPATCH_OWNER_NAME"))
    timezone_name: str | None = Field(None, validation_alias=_env("DISPATCH_TIMEZONE"))

    # Cost and context
    daily_budget_usd: float | None = Field(None, validation_alias=_env("DISPATCH_DAILY_BUDGET_USD"))
    context_tokens: int = Field(60_000, validation_alias=_env("DISPATCH_CONTEXT_TOKENS"))

    # Approvals and policy
    approval_ttl_hours: float = Field(24.0, validation_alias=_env("DISPATCH_APPROVAL_TTL_HOURS"))
    policy_raw: str = Field("", validation_alias=_env("DISPATCH_POLICY"))

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, v: object) -> object:
        return Path(os.path.expanduser(str(v))) if v else v

    @field_validator("daily_budget_usd", "timezone_name", "anthropic_base_url", mode="before")
    @classmethod
    def _blank_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    # Derived paths -------------------------------------------------------

    @property
    def workspace(self) -> Path:
        """Dispatch's own scratch space; always readable and writable by tools."""
        return self.home / "workspace"

    @property
    def outbox(self) -> Path:
        """Where produced deliverables go; always readable and writable by tools."""
        return self.home / "outbox"

    @cached_property
    def roots(self) -> list[Path]:
        """Folders the owner lets the agent read, resolved after symlinks."""
        parts = [p.strip() for p in self.roots_raw.split(os.pathsep) if p.strip()]
        return [Path(os.path.expanduser(p)).resolve() for p in parts]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'dispatch.db'}"

    @cached_property
    def tz(self) -> ZoneInfo:
        if self.timezone_name:
            return ZoneInfo(self.timezone_name)
        try:
            import tzlocal

            return ZoneInfo(tzlocal.get_localzone_name() or "UTC")
        except (ImportError, ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    @cached_property
    def policy_overrides(self) -> dict[str, str]:
        """`DISPATCH_POLICY=email=ask,files=auto,send_email=off` -> {key: policy}."""
        out: dict[str, str] = {}
        for item in self.policy_raw.split(","):
            if "=" in item:
                key, _, value = item.partition("=")
                out[key.strip()] = value.strip().lower()
        return out

    @property
    def telegram_owners(self) -> frozenset[str]:
        """Telegram user ids allowed without pairing (`DISPATCH_TELEGRAM_OWNERS=123,456`)."""
        return frozenset(p.strip() for p in self.telegram_owners_raw.split(",") if p.strip())

    @property
    def telegram_token(self) -> str | None:
        token = self.telegram_bot_token.get_secret_value().strip() if self.telegram_bot_token else ""
        return token or None

    def problems(self) -> list[str]:
        """What must be fixed before Dispatch can run, in words an owner can act on."""
        out = []
        if self.anthropic_api_key is None or not self.anthropic_api_key.get_secret_value():
            out.append(
                "ANTHROPIC_API_KEY is not set. Create a key at console.anthropic.com "
                "(Settings -> API keys) and put ANTHROPIC_API_KEY=sk-ant-... in .env "
                "or the environment."
            )
        for p in self.roots:
            if not p.is_dir():
                out.append(f"DISPATCH_ROOTS names {p}, which is not a folder.")
        if self.timezone_name:
            try:
                ZoneInfo(self.timezone_name)
            except (ZoneInfoNotFoundError, ValueError):
                out.append(
                    f"DISPATCH_TIMEZONE={self.timezone_name!r} is not a known time zone "
                    "(use a name like Europe/Berlin or America/New_York)."
                )
        for item in self.policy_raw.split(","):
            # policy_overrides skips an item without "=", so say so here instead of
            # silently running with the default policy the owner meant to change.
            if item.strip() and "=" not in item:
                out.append(f"DISPATCH_POLICY has {item.strip()!r}; write connector=policy, e.g. email=ask.")
        if self.telegram_token and ":" not in self.telegram_token:
            out.append("TELEGRAM_BOT_TOKEN does not look like a bot token (it has the form "
                       "123456789:AA..., from @BotFather).")
        bad_ids = [p for p in self.telegram_owners if not p.lstrip("-").isdigit()]
        if bad_ids:
            out.append(f"DISPATCH_TELEGRAM_OWNERS must be numeric Telegram user ids, not {', '.join(bad_ids)} "
                       "(or leave it empty and pair with `dispatch pair`).")
        for key, value in self.policy_overrides.items():
            if value not in ("auto", "ask", "off"):
                out.append(f"DISPATCH_POLICY sets {key}={value}; use auto, ask or off.")
        return out


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
