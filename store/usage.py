"""Sums over the model_call table: what today cost, what a task cost.

Kept apart from agent.model so the one-shot commands (`dispatch usage`, `log`)
answer without importing the model SDK.
"""

from __future__ import annotations

from datetime import datetime, timezone
from datetime import time as dtime

import sqlalchemy as sa

from store.config import Settings
from store.db import Store
from store.models import ModelCall


def spent_today(store: Store, settings: Settings, now: datetime | None = None) -> float:
    """US$ spent on model calls since local midnight in the owner's time zone."""
    local_now = (now or datetime.now(settings.tz)).astimezone(settings.tz)
    midnight = datetime.combine(local_now.date(), dtime.min, tzinfo=settings.tz)
    table = ModelCall.__table__  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        total = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(table.c.cost_usd), 0.0)).where(
                table.c.created_at >= midnight.astimezone(timezone.utc)
            )
        ).scalar_one()
    return float(total)


def usage_summary(store: Store, task_id: int) -> dict[str, float]:
    table = ModelCall.__table__  # type: ignore[attr-defined]
    cols = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd"]
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(*[sa.func.coalesce(sa.func.sum(table.c[c]), 0) for c in cols], sa.func.count()).where(
                table.c.task_id == task_id
            )
        ).one()
    out = dict(zip(cols, (float(v) for v in row[:-1])))
    out["calls"] = float(row[-1])
    return out
