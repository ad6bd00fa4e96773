"""Settings, read once from the environment and `.env` (pydantic-settings).

Lives in `store` because every layer needs it and imports point
bot -> agent -> tools -> store. Every field here is listed in `.env.example`.
Secrets are `SecretStr` so they never show up in a repr, a log line or an error.
"""

from __future__ import annotations

import os
import re
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

    # Slack front end and connector (optional; see the README section "Slack")
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))  # Socket Mode
    slack_signing_secret: SecretStr | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))  # HTTP
    slack_user_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_USER_TOKEN"))  # as the owner
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    slack_owners_raw: str = Field("", validation_alias=_env("DISPATCH_SLACK_OWNERS"))
    slack_http_host: str = Field("127.0.0.1", validation_alias=_env("SLACK_HTTP_HOST"))
    slack_http_port: int = Field(3000, validation_alias=_env("SLACK_HTTP_PORT"))
    slack_http_path: str = Field("/slack/events", validation_alias=_env("SLACK_HTTP_PATH"))

    # Where things live
    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("dispatch", appauthor=False)),
        validation_alias=_env("DISPATCH_HOME"),
    )
    roots_raw: str = Field("", validation_alias=_env("DISPATCH_ROOTS"))
    # Roots (each also in DISPATCH_ROOTS) where produced files may be written too.
    writable_roots_raw: str = Field("", validation_alias=_env("DISPATCH_WRITABLE_ROOTS"))
    # Plugins: MCP servers in the Claude Desktop format ({"mcpServers": {...}}); "" = DISPATCH_HOME/mcp.json.
    mcp_config_raw: str = Field("", validation_alias=_env("DISPATCH_MCP_CONFIG"))
    # How long one plugin tool call may take before it is stopped with a "timed out" error.
    mcp_timeout: float = Field(60.0, validation_alias=_env("DISPATCH_MCP_TIMEOUT"))
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

    # Always on: keep-awake and computer control (turned on with DISPATCH_POLICY=computer=auto
    # or /computer on; these only shape it)
    keep_awake: bool = Field(True, validation_alias=_env("DISPATCH_KEEP_AWAKE"))
    computer_display: str = Field("1280x800", validation_alias=_env("DISPATCH_COMPUTER_DISPLAY"))
    computer_tool: str = Field("", validation_alias=_env("DISPATCH_COMPUTER_TOOL"))  # "" = by the model

    # Email (optional: without EMAIL_ADDRESS the email tools say it is not set up)
    email_address: str | None = Field(None, validation_alias=_env("EMAIL_ADDRESS"))
    email_password: SecretStr | None = Field(None, validation_alias=_env("EMAIL_PASSWORD"))
    email_username: str | None = Field(None, validation_alias=_env("EMAIL_USERNAME"))
    email_from_name: str = Field("", validation_alias=_env("EMAIL_FROM_NAME"))
    imap_host: str = Field("imap.gmail.com", validation_alias=_env("IMAP_HOST"))
    imap_port: int = Field(993, validation_alias=_env("IMAP_PORT"))
    imap_security: str = Field("", validation_alias=_env("IMAP_SECURITY"))  # ssl|starttls|none; "" = by port
    smtp_host: str = Field("smtp.gmail.com", validation_alias=_env("SMTP_HOST"))
    smtp_port: int = Field(465, validation_alias=_env("SMTP_PORT"))
    smtp_security: str = Field("", validation_alias=_env("SMTP_SECURITY"))
    email_timeout: float = Field(30.0, validation_alias=_env("EMAIL_TIMEOUT"))
    email_save_drafts: bool = Field(False, validation_alias=_env("EMAIL_SAVE_DRAFTS"))
    email_ca_file: Path | None = Field(None, validation_alias=_env("EMAIL_CA_FILE"))

    # Google Drive (optional; `dispatch connect google`, see the README section "Google Drive")
    google_client_secrets: Path | None = Field(None, validation_alias=_env("DISPATCH_GOOGLE_CLIENT_SECRETS"))
    # A root URL: Drive calls go to {URL}drive/v3/..., uploads to {URL}upload/drive/v3/...
    google_api_url: str = Field("https://www.googleapis.com/", validation_alias=_env("DISPATCH_GOOGLE_API_URL"))
    google_token_url: str = Field("https://oauth2.googleapis.com/token", validation_alias=_env("DISPATCH_GOOGLE_TOKEN_URL"))
    # Voice notes (optional: an OpenAI-compatible transcription endpoint, or local faster-whisper)
    transcribe_url: str | None = Field(None, validation_alias=_env("DISPATCH_TRANSCRIBE_URL"))
    transcribe_key: SecretStr | None = Field(None, validation_alias=_env("DISPATCH_TRANSCRIBE_KEY"))
    transcribe_model: str = Field("whisper-1", validation_alias=_env("DISPATCH_TRANSCRIBE_MODEL"))
    transcribe_timeout: float = Field(120.0, validation_alias=_env("DISPATCH_TRANSCRIBE_TIMEOUT"))
    whisper_model: str | None = Field(None, validation_alias=_env("DISPATCH_WHISPER_MODEL"))

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, v: object) -> object:
        return Path(os.path.expanduser(str(v))) if v else v

    @field_validator("daily_budget_usd", "timezone_name", "anthropic_base_url", "email_ca_file",
                     "google_client_secrets", "transcribe_url", "whisper_model", mode="before")
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

    @property
    def inbox(self) -> Path:
        """Where files from the phone land (bot.inbox); readable by tools, never written by them."""
        return self.home / "inbox"

    @cached_property
    def roots(self) -> list[Path]:
        """Folders the owner lets the agent read, resolved after symlinks."""
        parts = [p.strip() for p in self.roots_raw.split(os.pathsep) if p.strip()]
        return [Path(os.path.expanduser(p)).resolve() for p in parts]

    @cached_property
    def writable_roots(self) -> list[Path]:
        """Owner folders where Dispatch may also write (it always may in its workspace
        and outbox), resolved after symlinks. Only those that are also roots count."""
        parts = [p.strip() for p in self.writable_roots_raw.split(os.pathsep) if p.strip()]
        return [Path(os.path.expanduser(p)).resolve() for p in parts]

    @property
    def mcp_config(self) -> Path:
        """The plugin (MCP server) config file."""
        return Path(self.mcp_config_raw).expanduser() if self.mcp_config_raw else self.home / "mcp.json"

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
        return _secret(self.telegram_bot_token)

    @property
    def slack_owners(self) -> frozenset[str]:
        """Slack user ids allowed without pairing (`DISPATCH_SLACK_OWNERS=U012AB3CD,U045EF6GH`)."""
        return frozenset(p.strip() for p in self.slack_owners_raw.split(",") if p.strip())

    @property
    def slack_token(self) -> str | None:
        """The bot token (xoxb-...): set means the Slack front end runs."""
        return _secret(self.slack_bot_token)

    @property
    def slack_app(self) -> str | None:
        return _secret(self.slack_app_token)

    @property
    def slack_secret(self) -> str | None:
        return _secret(self.slack_signing_secret)

    @property
    def slack_user(self) -> str | None:
        return _secret(self.slack_user_token)

    @property
    def slack_mode(self) -> str | None:
        """"socket" (an app token: no public URL needed), "http" (a signing secret only), or None."""
        if not self.slack_token:
            return None
        return "socket" if self.slack_app else "http" if self.slack_secret else None

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
        for p in self.writable_roots:
            if not any(p == r or p.is_relative_to(r) for r in self.roots):
                out.append(f"DISPATCH_WRITABLE_ROOTS names {p}, which is not inside DISPATCH_ROOTS; "
                           "add it there too (a writable folder must also be readable).")
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
        out.extend(self._mail_problems())
        out.extend(self._slack_problems())
        out.extend(self._desktop_problems())
        out.extend(self._google_problems())
        out.extend(self._voice_problems())
        return out

    def _google_problems(self) -> list[str]:
        """Drive is optional; a secrets file that isn't there, or a URL that isn't one, is a problem."""
        out = []
        if self.google_client_secrets and not self.google_client_secrets.expanduser().is_file():
            out.append(f"DISPATCH_GOOGLE_CLIENT_SECRETS names {self.google_client_secrets}, which is not a file "
                       "(download the OAuth client's JSON: see the README section \u201cGoogle Drive\u201d).")
        for name, url in (("DISPATCH_GOOGLE_API_URL", self.google_api_url),
                          ("DISPATCH_GOOGLE_TOKEN_URL", self.google_token_url)):
            if not url.startswith(("https://", "http://")):
                out.append(f"{name}={url!r} is not a URL.")
        if not self.google_api_url.endswith("/"):
            out.append(f"DISPATCH_GOOGLE_API_URL={self.google_api_url!r} must end with / "
                       "(a root like https://www.googleapis.com/).")
        return out

    def _voice_problems(self) -> list[str]:
        """Voice is optional; a URL that is not one, or a silly timeout, is a problem."""
        out = []
        if self.transcribe_url and not self.transcribe_url.startswith(("https://", "http://")):
            out.append(f"DISPATCH_TRANSCRIBE_URL={self.transcribe_url!r} is not a URL; give the base URL of an "
                       "OpenAI-compatible API, e.g. https://api.openai.com/v1 or https://api.groq.com/openai/v1.")
        if self.transcribe_timeout <= 0:
            out.append("DISPATCH_TRANSCRIBE_TIMEOUT must be a number of seconds above 0.")
        if not self.transcribe_model.strip():
            out.append("DISPATCH_TRANSCRIBE_MODEL is empty; leave it out for whisper-1, or name the model.")
        return out

    def _desktop_problems(self) -> list[str]:
        out = []
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", self.computer_display or "")
        if not m or not (320 <= int(m.group(1)) <= 4096 and 240 <= int(m.group(2)) <= 4096):
            out.append(f"DISPATCH_COMPUTER_DISPLAY={self.computer_display!r} must be a size like 1280x800 "
                       "(the largest screenshot the model sees; between 320x240 and 4096x4096).")
        if self.computer_tool.strip() and not re.fullmatch(r"computer_\d{8}", self.computer_tool.strip()):
            out.append(f"DISPATCH_COMPUTER_TOOL={self.computer_tool!r} must be a computer tool type like "
                       "computer_20251124, or empty to choose by DISPATCH_MODEL.")
        return out

    def _slack_problems(self) -> list[str]:
        """Slack is optional; tokens of the wrong kind, or halves of a setup, are problems."""
        out = []
        bot, app, secret, user = self.slack_token, self.slack_app, self.slack_secret, self.slack_user
        for name, value, prefix, what in (
            ("SLACK_BOT_TOKEN", bot, "xoxb-", "the Bot User OAuth Token, under OAuth & Permissions"),
            ("SLACK_APP_TOKEN", app, "xapp-", "an app-level token with connections:write, under Basic Information"),
            ("SLACK_USER_TOKEN", user, "xoxp-", "the User OAuth Token, under OAuth & Permissions"),
        ):
            if value and not value.startswith(prefix):
                out.append(f"{name} does not look right: it should start with {prefix} ({what}).")
        if bot and not app and not secret:
            out.append("SLACK_BOT_TOKEN is set but Slack can't reach Dispatch: set SLACK_APP_TOKEN (Socket Mode, "
                       "recommended: no public address needed) or SLACK_SIGNING_SECRET (HTTP mode).")
        if not bot and (app or secret or user):
            which = ", ".join(n for n, v in (("SLACK_APP_TOKEN", app), ("SLACK_SIGNING_SECRET", secret),
                                              ("SLACK_USER_TOKEN", user)) if v)
            out.append(f"{which} is set but SLACK_BOT_TOKEN is not; Slack needs the bot token too "
                       "(see the README section \u201cSlack\u201d).")
        bad_ids = [p for p in self.slack_owners if not re.fullmatch(r"[UW][A-Z0-9]{2,}", p)]
        if bad_ids:
            out.append(f"DISPATCH_SLACK_OWNERS must be Slack member ids like U012AB3CD, not {', '.join(bad_ids)} "
                       "(in Slack: your profile -> \u22ee -> Copy member ID; or pair with `dispatch pair`).")
        if not self.slack_api_url.startswith(("https://", "http://")):
            out.append(f"SLACK_API_URL={self.slack_api_url!r} is not a URL (default https://slack.com/api/).")
        if bot and not app and secret:
            if not 0 < self.slack_http_port < 65536:
                out.append(f"SLACK_HTTP_PORT={self.slack_http_port} is not a port number.")
            if not self.slack_http_path.startswith("/"):
                out.append(f"SLACK_HTTP_PATH={self.slack_http_path!r} must start with /.")
        return out

    def _mail_problems(self) -> list[str]:
        """Mail is optional; only settings that contradict each other are problems."""
        out = []
        address = (self.email_address or "").strip()
        has_password = bool(self.email_password and self.email_password.get_secret_value().strip())
        if address and not has_password:
            out.append("EMAIL_ADDRESS is set but EMAIL_PASSWORD is not (for Gmail, an app password: "
                       "see the README section \u201cEmail\u201d).")
        if has_password and not address:
            out.append("EMAIL_PASSWORD is set but EMAIL_ADDRESS is not; set the address it belongs to.")
        if address and (address.count("@") != 1 or "." not in address.rpartition("@")[2] or " " in address):
            out.append(f"EMAIL_ADDRESS={address!r} is not an email address.")
        if not address:
            return out
        for kind, host, port, mode in (("IMAP", self.imap_host, self.imap_port, self.imap_security),
                                       ("SMTP", self.smtp_host, self.smtp_port, self.smtp_security)):
            mode = mode.strip().lower()
            if not host.strip():
                out.append(f"{kind}_HOST is empty; set your provider's {kind} server.")
            if not 0 < port < 65536:
                out.append(f"{kind}_PORT={port} is not a port number.")
            if mode not in ("", "ssl", "starttls", "none"):
                out.append(f"{kind}_SECURITY={mode!r}; use ssl, starttls or none (empty: by the port).")
            if mode == "none" and host.strip().lower() not in ("localhost", "127.0.0.1", "::1"):
                out.append(f"{kind}_SECURITY=none would send your mail password unencrypted to {host}; "
                           "use ssl or starttls (none is only for a server on this computer).")
            ssl_port = 993 if kind == "IMAP" else 465
            if mode == "ssl" and port in (143, 587, 25):
                out.append(f"{kind}_SECURITY=ssl with {kind}_PORT={port}: that port expects starttls.")
            if mode == "starttls" and port == ssl_port:
                out.append(f"{kind}_SECURITY=starttls with {kind}_PORT={port}: that port expects ssl.")
        if self.email_timeout <= 0:
            out.append("EMAIL_TIMEOUT must be a number of seconds above 0.")
        if self.email_ca_file and not self.email_ca_file.is_file():
            out.append(f"EMAIL_CA_FILE names {self.email_ca_file}, which is not a file.")
        return out


def _secret(value: SecretStr | None) -> str | None:
    text = value.get_secret_value().strip() if value else ""
    return text or None
