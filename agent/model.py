"""Talking to the model: the SDK client, usage and cost, and errors in plain words.

Retries (429, 529, 5xx, connection errors, timeouts) are the SDK's own, with its
backoff and `retry-after` handling; we only set how many. What is still failing
after them becomes one sentence the owner can act on.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:  # the SDK takes ~1 s and ~40 MB to import: loaded for the first model call, see Model.warm_up
    import anthropic
    from anthropic.types import Message as ApiMessage

from store.config import Settings
from store.db import Store
from store.models import ModelCall

# US$ per million tokens: (input, output). Cache writes cost 1.25x input (5-minute
# cache), cache reads 0.1x input. Matched by the model name's family.
# Unknown names are priced as Sonnet; the figure is an estimate, never a bill.
PRICES: list[tuple[str, float, float]] = [
    ("opus-4-0", 15.0, 75.0),
    ("opus-4-1", 15.0, 75.0),
    ("opus-4-2025", 15.0, 75.0),
    ("opus", 5.0, 25.0),
    ("haiku-3", 0.8, 4.0),
    ("haiku", 1.0, 5.0),
    ("sonnet", 3.0, 15.0),
]
DEFAULT_PRICE = (3.0, 15.0)


def price_of(model: str) -> tuple[float, float]:
    for key, inp, out in PRICES:
        if key in model:
            return inp, out
    return DEFAULT_PRICE


def cost_usd(model: str, inp: int, out: int, cache_write: int, cache_read: int) -> float:
    p_in, p_out = price_of(model)
    return (inp * p_in + cache_write * p_in * 1.25 + cache_read * p_in * 0.1 + out * p_out) / 1_000_000


class ModelFailure(Exception):
    """The model could not be reached or refused, after the SDK's retries. `str()` is
    a sentence for the owner; it never contains the API key."""


def make_client(settings: Settings) -> "anthropic.AsyncAnthropic":
    import anthropic

    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
    return anthropic.AsyncAnthropic(
        api_key=key,
        base_url=settings.anthropic_base_url,
        max_retries=settings.model_retries,
        timeout=settings.model_timeout,
    )


def explain(exc: Exception, settings: Settings) -> str:
    import anthropic

    where = settings.anthropic_base_url or "api.anthropic.com"
    tries = settings.model_retries + 1
    if isinstance(exc, anthropic.APITimeoutError):
        return f"The model did not answer within {settings.model_timeout:.0f} s ({tries} tries)."
    if isinstance(exc, anthropic.APIConnectionError):
        return f"Could not reach the model service at {where} ({tries} tries). Is the desktop online?"
    if isinstance(exc, anthropic.AuthenticationError):
        return "The model service refused the API key (401). Check ANTHROPIC_API_KEY."
    if isinstance(exc, anthropic.PermissionDeniedError):
        return "The API key is not allowed to use this model (403). Check DISPATCH_MODEL and your plan."
    if isinstance(exc, anthropic.NotFoundError):
        return f"The model {settings.model!r} was not found (404). Check DISPATCH_MODEL."
    if isinstance(exc, anthropic.RateLimitError):
        return f"The model service is rate-limiting this key (429), still after {tries} tries. Try again in a minute."
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code == 529:
        return f"The model service is overloaded (529), still after {tries} tries. Try again in a few minutes."
    if isinstance(exc, anthropic.BadRequestError):
        return f"The model service rejected the request (400): {_api_message(exc)}"
    if isinstance(exc, anthropic.APIStatusError):
        return f"The model service failed (HTTP {exc.status_code}), still after {tries} tries. Try again later."
    return f"The model call failed: {type(exc).__name__}."


def _api_message(exc: "anthropic.APIStatusError") -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    return str(err.get("message") or exc.message)[:300]


class Model:
    """The model as the runner uses it. The SDK is imported and the client made on first
    use, so a process starts (and starts polling its chat apps) without waiting for the
    SDK, and an idle Dispatch does not hold it (~40 MB resident: most of the idle
    process, bench/memory_bench.py). The first model call after a start imports it in a
    thread (warm_up), while the front ends keep answering."""

    def __init__(self, settings: Settings, store: Store, client: "anthropic.AsyncAnthropic | None" = None) -> None:
        self.settings = settings
        self.store = store
        self._client = client

    @property
    def client(self) -> "anthropic.AsyncAnthropic":
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    async def warm_up(self) -> None:
        """Import the SDK in a thread while the event loop (polling, buttons) keeps running."""
        if "anthropic" not in sys.modules:
            await asyncio.to_thread(importlib.import_module, "anthropic")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def create(self, *, task_id: int | None, purpose: str = "turn", **request: Any) -> "ApiMessage":
        """One Messages API call, its usage recorded before the caller sees the result."""
        await self.warm_up()
        import anthropic

        started = time.perf_counter()
        try:
            response = await self.client.messages.create(
                model=self.settings.model, max_tokens=self.settings.max_tokens, **request
            )
        except anthropic.APIError as exc:
            raise ModelFailure(explain(exc, self.settings)) from exc
        self.record(response, task_id, purpose, int((time.perf_counter() - started) * 1000))
        return response

    def record(self, response: "ApiMessage", task_id: int | None, purpose: str, ms: int) -> None:
        u = response.usage
        write = u.cache_creation_input_tokens or 0
        read = u.cache_read_input_tokens or 0
        row = ModelCall(
            task_id=task_id, model=response.model or self.settings.model, purpose=purpose,
            input_tokens=u.input_tokens, output_tokens=u.output_tokens,
            cache_creation_input_tokens=write, cache_read_input_tokens=read,
            cost_usd=cost_usd(self.settings.model, u.input_tokens, u.output_tokens, write, read),
            stop_reason=response.stop_reason or "", duration_ms=ms,
        )
        with self.store.engine.begin() as conn:  # a Core insert: this runs on every model step
            conn.execute(sa.insert(ModelCall.__table__).values(**row.model_dump(exclude={"id"})))  # type: ignore[attr-defined]
