"""Who the owner is: chat identities bound by a one-time pairing code or an allowlist.

`dispatch pair` (another process) writes a code's hash with its expiry into the
setting table under `pairing:<sha256>`; redeeming deletes that row with one
conditional DELETE, so a code works once, for one account, even if two people
type it at the same moment. Only the hash is stored: the code itself is shown
once on the desktop and never written anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import select

from store.db import Store
from store.models import OwnerIdentity, PairingAttempt, Setting, utcnow

CODE_TTL = timedelta(minutes=10)
# No 0/O, 1/I/L: the code is read off a screen and typed on a phone.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
PREFIX = "pairing:"


def _key(code: str) -> str:
    normal = code.strip().upper().replace("-", "").replace(" ", "")
    return PREFIX + hashlib.sha256(normal.encode()).hexdigest()


def new_pairing_code(store: Store, ttl: timedelta = CODE_TTL) -> tuple[str, datetime]:
    """A fresh code like `K7QF-9XMB` (40 bits) and when it expires."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(8))
    expires = utcnow() + ttl
    store.set_setting(_key(raw), {"expires": expires.isoformat()})
    store.log("pairing", "pairing code issued", expires=expires.isoformat())
    return f"{raw[:4]}-{raw[4:]}", expires


def redeem(store: Store, platform: str, user_id: str, display_name: str, code: str) -> bool:
    """Bind this account as an owner if `code` is a live pairing code. One use only."""
    key = _key(code)
    with store.session() as s:
        row = s.get(Setting, key)
    if row is None:
        return False
    table = Setting.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        won = conn.execute(sa.delete(table).where(table.c.key == key)).rowcount == 1
    if not won or datetime.fromisoformat(row.value["expires"]) < utcnow():
        return False
    add_owner(store, platform, user_id, display_name)
    store.log("pairing", f"{platform} user {user_id} paired as owner", platform=platform, user=user_id)
    return True


def add_owner(store: Store, platform: str, user_id: str, display_name: str = "") -> None:
    with store.session() as s:
        exists = s.exec(select(OwnerIdentity).where(
            OwnerIdentity.platform == platform, OwnerIdentity.user_id == user_id)).first()
        if exists is None:
            s.add(OwnerIdentity(platform=platform, user_id=user_id, display_name=display_name))
            s.commit()


def is_owner(store: Store, platform: str, user_id: str, allowlist: set[str] | frozenset[str] = frozenset()) -> bool:
    if user_id in allowlist:
        return True
    with store.session() as s:
        return s.exec(select(OwnerIdentity.id).where(
            OwnerIdentity.platform == platform, OwnerIdentity.user_id == user_id)).first() is not None


def owners(store: Store, platform: str | None = None) -> list[OwnerIdentity]:
    with store.session() as s:
        q = select(OwnerIdentity)
        if platform:
            q = q.where(OwnerIdentity.platform == platform)
        return list(s.exec(q))


def first_refusal(store: Store, platform: str, user_id: str) -> bool:
    """Log a refusal; True only the first time this account is refused (so a
    stranger gets one polite reply and then silence)."""
    key = f"refused:{platform}:{user_id}"
    first = store.get_setting(key) is None
    if first:
        store.set_setting(key, utcnow().isoformat())
    return first


PAIR_TRIES_PER_ACCOUNT = 5  # wrong codes one account may try per window
PAIR_TRIES_TOTAL = 20  # wrong codes all strangers together may try per window
PAIR_WINDOW = timedelta(hours=1)


def take_pairing_try(store: Store, platform: str, user_id: str) -> bool:
    """Count one pairing attempt for this account and in total; False when either is
    locked out. Each count is one conditional UPDATE (`tries < limit`), so twenty
    attempts at once cannot get past the limit, and the counts survive restarts."""
    return _take(store, f"{platform}:{user_id}", PAIR_TRIES_PER_ACCOUNT) and _take(store, "*", PAIR_TRIES_TOTAL)


def _take(store: Store, key: str, limit: int) -> bool:
    table = PairingAttempt.__table__  # type: ignore[attr-defined]
    now = utcnow()
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(table.c.window_start).where(table.c.key == key)).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(table).values(key=key, tries=0, window_start=now))
            except sa.exc.IntegrityError:
                pass  # someone else made the row at the same moment
        elif _aware(row.window_start) < now - PAIR_WINDOW:
            conn.execute(sa.update(table).where(table.c.key == key, table.c.window_start == row.window_start)
                         .values(tries=0, window_start=now))
        return conn.execute(sa.update(table).where(table.c.key == key, table.c.tries < limit)
                            .values(tries=table.c.tries + 1)).rowcount == 1


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=utcnow().tzinfo)
