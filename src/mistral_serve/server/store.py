"""The embedded store (SQLite, WAL): API keys as salted hashes, the log of generations, and the
Responses API's stored responses (each visible only to the key that made it, until it expires).

Every write is one short transaction on its own connection, so a crash loses at most the record
being written, and readers never block the writer (WAL mode).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    key_name TEXT,
    user TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    ttft REAL,
    duration REAL NOT NULL,
    finish_reason TEXT,
    status INTEGER NOT NULL,
    request_json TEXT,
    completion_text TEXT
);
CREATE INDEX IF NOT EXISTS generations_created ON generations (created);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_name TEXT,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    response_json TEXT NOT NULL,
    input_items_json TEXT NOT NULL,
    history_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires);
"""

KEY_PREFIX = "ms-"


def _digest(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode()).digest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    created: float
    revoked: float | None


@dataclass(frozen=True, slots=True)
class Generation:
    id: str
    created: float
    model: str
    endpoint: str
    key_name: str | None
    user: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft: float | None
    duration: float
    finish_reason: str | None
    status: int
    request_json: str | None = None
    completion_text: str | None = None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for GET /v1/responses/{id} and previous_response_id: the response object,
    its own input items (with their ids), and the conversation it ends as chat messages (without
    the instructions, which are not carried over)."""

    id: str
    key_name: str | None
    created: float
    expires: float
    response: dict
    input_items: list[dict]
    history: list[dict]


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # ---- keys ------------------------------------------------------------------------------
    def create_key(self, name: str) -> str:
        """Store a new key and return it; it cannot be read back later."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError("a key name is 1-64 letters, digits, '-' or '_'")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        try:
            with closing(self._connect()) as db, db:
                db.execute("INSERT INTO api_keys (name, salt, hash, created) VALUES (?, ?, ?, ?)",
                           (name, salt, _digest(salt, key), time.time()))
        except sqlite3.IntegrityError:
            raise ValueError(f"a key named {name!r} exists already") from None
        return key

    def revoke_key(self, name: str) -> bool:
        with closing(self._connect()) as db, db:
            cur = db.execute("UPDATE api_keys SET revoked = ? WHERE name = ? AND revoked IS NULL",
                             (time.time(), name))
            return cur.rowcount > 0

    def list_keys(self) -> list[KeyInfo]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, created, revoked FROM api_keys ORDER BY created").fetchall()
        return [KeyInfo(*row) for row in rows]

    def has_active_keys(self) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM api_keys WHERE revoked IS NULL LIMIT 1").fetchone() is not None

    def check_key(self, key: str | None) -> tuple[bool, str | None]:
        """(whether any key is active, the name of the active key equal to `key` or None), from
        one read. Compared in constant time: no early exit, so the time does not tell which key
        matched."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT name, salt, hash FROM api_keys WHERE revoked IS NULL").fetchall()
        found = None
        for name, salt, digest in rows:
            if key is not None and hmac.compare_digest(_digest(salt, key), digest):
                found = name
        return bool(rows), found

    # ---- generations --------------------------------------------------------------------------
    def record(self, g: Generation) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (g.id, g.created, g.model, g.endpoint, g.key_name, g.user, g.prompt_tokens,
                        g.completion_tokens, g.cached_tokens, g.ttft, g.duration, g.finish_reason, g.status,
                        g.request_json, g.completion_text))

    def generations(self, limit: int = 50, before: float | None = None,
                    after_id: str | None = None) -> list[Generation]:
        """Newest first (ties in time by id), created before `before`, and listed after the record
        `after_id` (a page cursor: records of the same second are neither lost nor repeated).
        Raises KeyError for an unknown `after_id`."""
        query, args = "SELECT * FROM generations WHERE created < ?", [before if before is not None else float("inf")]
        with closing(self._connect()) as db:
            if after_id is not None:
                cursor = db.execute("SELECT created, id FROM generations WHERE id = ?", (after_id,)).fetchone()
                if cursor is None:
                    raise KeyError(after_id)
                query += " AND (created, id) < (?, ?)"
                args += cursor
            rows = db.execute(query + " ORDER BY created DESC, id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Generation(*row) for row in rows]

    def generation(self, generation_id: str) -> Generation | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM generations WHERE id = ?", (generation_id,)).fetchone()
        return Generation(*row) if row else None

    def usage(self) -> list[tuple[str, str, int, int, int]]:
        """(key name or '-', day, requests, prompt tokens, completion tokens), newest day first."""
        with closing(self._connect()) as db:
            return db.execute(
                "SELECT COALESCE(key_name, '-'), date(created, 'unixepoch') AS day, COUNT(*), "
                "SUM(prompt_tokens), SUM(completion_tokens) FROM generations "
                "GROUP BY 1, 2 ORDER BY day DESC, 1").fetchall()

    # ---- stored responses ------------------------------------------------------------------------
    def put_response(self, r: StoredResponse) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM responses WHERE expires <= ?", (time.time(),))  # the expired go on each write
            db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?)",
                       (r.id, r.key_name, r.created, r.expires, json.dumps(r.response, ensure_ascii=False),
                        json.dumps(r.input_items, ensure_ascii=False), json.dumps(r.history, ensure_ascii=False)))

    def get_response(self, response_id: str, key_name: str | None) -> StoredResponse | None:
        """The response if it exists, has not expired and was made with this key (None: open server)."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT * FROM responses WHERE id = ? AND key_name IS ? AND expires > ?",
                             (response_id, key_name, time.time())).fetchone()
        if row is None:
            return None
        rid, key, created, expires, response, items, history = row
        return StoredResponse(rid, key, created, expires, json.loads(response), json.loads(items), json.loads(history))

    def delete_response(self, response_id: str, key_name: str | None) -> bool:
        with closing(self._connect()) as db, db:
            cur = db.execute("DELETE FROM responses WHERE id = ? AND key_name IS ? AND expires > ?",
                             (response_id, key_name, time.time()))
            return cur.rowcount > 0
