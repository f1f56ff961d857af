"""The prediction store's PostgreSQL schema, how a connection to it is opened, and the
translation of every ``psycopg2`` error into a Sluice error that names the store.

Tables (prefixed ``sluice_``, so the store may share a database with MLflow's tables):

- ``sluice_predictions``: one row per request id, model and role (the primary key, which the
  shadow judge's pair join walks), numbered by ``seq`` (the order pairs are read in; a replaced
  answer gets a new one, as SQLite's ``INSERT OR REPLACE`` gives it). ``time`` is the epoch
  seconds the router sent the request (``double precision``, the float the router measured,
  exactly as SQLite keeps it). Indexes: ``(model, role, time)`` for the graph's outcome series
  and a judge's ``since``, ``(model, revision, time)`` for per-revision reads (the KPI judge),
  ``(time)`` for retention, ``(seq)`` for the order and ``max_rows``.
- ``sluice_feedback``: one value per request id and named outcome (the primary key: the judge
  finds a request's outcome by it). A value is a number or a class name, kept in two typed
  columns, ``value_number double precision`` and ``value_text text``, with a CHECK that exactly
  one is set: a number stays a number and a class name text, as SQLite's untyped column keeps
  them, and each is read back as it was given. Typed columns rather than JSONB because the
  type is the whole distinction to keep, a KPI judge can ``avg(value_number)`` in SQL without
  casting, and nothing needs parsing on the way out.
- ``sluice_event_halves`` (schema 2): the halves of KServe's logged requests waiting for their
  other half (:mod:`controller.backends.postgres_event_halves`), one per event key (request id,
  InferenceService, namespace, component, revision) and kind, with what the half carried
  (``metadata`` as JSON text, ``data`` as ``bytea``) and ``since``, when it arrived (epoch
  seconds; index for the expiry).
- ``sluice_schema``: one row, the schema's ``version``; a store of schema 1 is migrated to 2
  (the halves' table added), one of a version this Sluice does not know is refused with one
  line.

Several processes (``sluice serve`` replicas, ``sluice feedback``) may open a new database at
once: the schema is created (or migrated) in one transaction under a transaction-level advisory
lock, so exactly one of them creates it and the others find it done.

Errors: a server that cannot be reached (refused, timed out, starting up, out of connection
slots) is a :class:`TransientError` naming ``host:port``; a wrong user, password or database
a :class:`ConfigError` naming the fix. The URL's password never appears in either (it is
registered with :mod:`controller.redact` as well).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import ConfigError, TransientError
from controller.redact import redact, register_secret

if TYPE_CHECKING:
    import psycopg2.extensions as pg

__all__ = [
    "SCHEMA_VERSION",
    "StoreAddress",
    "connect",
    "ensure_schema",
    "postgres_errors",
    "store_address",
]

#: The store's schema version (its own numbering, apart from the SQLite file's).
SCHEMA_VERSION = 2
#: ``pg_advisory_xact_lock`` key of schema creation: "sluice1" in ASCII.
_SCHEMA_LOCK_KEY = 0x736C7569636531
_SETTING = "SLUICE_PREDICTION_STORE_URL"

_HALVES = """
CREATE TABLE sluice_event_halves (
    request_id text NOT NULL,
    model text NOT NULL,
    namespace text NOT NULL,
    component text NOT NULL,
    revision text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('request', 'response')),
    since double precision NOT NULL,
    metadata text NOT NULL,
    data bytea NOT NULL,
    recorded_at double precision,
    status integer NOT NULL,
    PRIMARY KEY (request_id, model, namespace, component, revision, kind)
);
CREATE INDEX sluice_event_halves_since_idx ON sluice_event_halves (since);
"""
_CREATE = (
    """
CREATE SEQUENCE sluice_predictions_seq;
CREATE TABLE sluice_predictions (
    request_id text NOT NULL,
    model text NOT NULL,
    role text NOT NULL CHECK (role IN ('primary', 'shadow')),
    seq bigint NOT NULL,
    time double precision NOT NULL,
    version text NOT NULL,
    revision text NOT NULL,
    inputs_digest text NOT NULL,
    output text,
    latency_ms double precision NOT NULL,
    status integer NOT NULL,
    PRIMARY KEY (request_id, model, role)
);
CREATE INDEX sluice_predictions_seq_idx ON sluice_predictions (seq);
CREATE INDEX sluice_predictions_time_idx ON sluice_predictions (time);
CREATE INDEX sluice_predictions_model_role_time_idx ON sluice_predictions (model, role, time);
CREATE INDEX sluice_predictions_model_revision_time_idx
    ON sluice_predictions (model, revision, time);
CREATE SEQUENCE sluice_feedback_seq;
CREATE TABLE sluice_feedback (
    request_id text NOT NULL,
    outcome text NOT NULL,
    seq bigint NOT NULL,
    value_number double precision,
    value_text text,
    time double precision NOT NULL,
    PRIMARY KEY (request_id, outcome),
    CHECK ((value_number IS NULL) <> (value_text IS NULL))
);
CREATE INDEX sluice_feedback_seq_idx ON sluice_feedback (seq);
CREATE INDEX sluice_feedback_time_idx ON sluice_feedback (time);
CREATE TABLE sluice_schema (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL
);
INSERT INTO sluice_schema (version) VALUES (%s);
"""
    + _HALVES
)
#: What brings a store of an older schema to :data:`SCHEMA_VERSION`, by its version.
_MIGRATIONS = {1: _HALVES + "UPDATE sluice_schema SET version = 2;"}  # noqa: S608
#: libpq's words for a server that answered and refused who we are or what we asked for.
_REFUSALS = (
    "does not exist",
    "authentication failed",
    "pg_hba.conf",
    "permission denied",
    "password",
    "invalid",
    "ssl",
)
#: SQLSTATE classes of a server that is there but cannot serve now: connection exceptions,
#: insufficient resources (out of connection slots), operator intervention (shutting down).
_TRANSIENT_CLASSES = ("08", "53", "57")
#: Deadlock and serialization failure: another writer won a race; the transaction may be retried.
RETRYABLE = ("40P01", "40001")
_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True, slots=True)
class StoreAddress:
    """A store's URL split into what messages may show and what only libpq sees."""

    url: str
    host: str
    port: int
    database: str

    def __str__(self) -> str:
        """``postgresql://host:port/database``: no user, no password."""
        return f"postgresql://{self.host}:{self.port}/{self.database}"


def store_address(url: str) -> StoreAddress:
    """The address of a ``postgresql://[user[:password]@]host[:port]/database`` URL (its
    password registered as a secret); :class:`ConfigError` without it when it is not one."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        raise ConfigError(
            f"{_SETTING} is not a URL such as postgresql://user:password@host:5432/sluice"
        ) from None
    register_secret(parts.password)
    database = parts.path.lstrip("/")
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not database:
        raise ConfigError(
            f"{_SETTING} must be postgresql://user:password@host:5432/DATABASE (host and "
            "database required)"
        )
    return StoreAddress(url, parts.hostname, port, urllib.parse.unquote(database))


def _detail(exc: BaseException, address: StoreAddress) -> str:
    """The library's first line, redacted (libpq's own words name host and port only)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    password = urllib.parse.urlsplit(address.url).password
    if password:
        text = text.replace(password, "***")
    return redact(text.removeprefix("FATAL:").strip())


def _connect_error(exc: Exception, address: StoreAddress) -> Exception:
    detail = _detail(exc, address)
    lowered = detail.lower()
    if "does not exist" in lowered and "database" in lowered:
        return ConfigError(
            f"the prediction store {address} cannot be used ({detail}): create the database "
            f"(createdb {address.database}) or fix the database in {_SETTING}"
        )
    busy = ("starting up", "shutting down", "too many", "recovery", "remaining connection")
    if any(word in lowered for word in _REFUSALS) and not any(w in lowered for w in busy):
        return ConfigError(
            f"the prediction store {address} refused the connection ({detail}): fix the user "
            f"and password in {_SETTING}"
        )
    return TransientError(
        f"the prediction store at {address.host}:{address.port} is unreachable ({detail}): "
        "is PostgreSQL running and reachable there? Try again"
    )


def connect(address: StoreAddress, *, lock_timeout: float, connect_timeout: int) -> pg.connection:
    """An autocommit connection to the store; a statement waits ``lock_timeout`` seconds for
    another writer's lock, a connection attempt ``connect_timeout``."""
    import psycopg2  # imported when a store is used: `sluice` without one never loads libpq

    try:
        connection = psycopg2.connect(
            address.url,
            connect_timeout=max(connect_timeout, 1),
            application_name="sluice",
            options=f"-c lock_timeout={max(int(lock_timeout * 1000), 1)}",
        )
    except psycopg2.Error as exc:
        raise _connect_error(exc, address) from None
    connection.autocommit = True
    return connection


@contextlib.contextmanager
def postgres_errors(address: StoreAddress) -> Iterator[None]:
    """``psycopg2`` errors as Sluice's: a held lock or a lost server is transient, any other
    needs a person."""
    import psycopg2

    try:
        yield
    except psycopg2.Error as exc:
        code = exc.pgcode or ""
        detail = _detail(exc, address)
        if code == _LOCK_NOT_AVAILABLE:
            raise TransientError(
                f"the prediction store {address} is locked by another process ({detail}); "
                "try again when it is free"
            ) from None
        if code in RETRYABLE:
            raise TransientError(
                f"the prediction store {address}: a concurrent writer conflicted ({detail}); "
                "try again"
            ) from None
        lost = isinstance(exc, psycopg2.InterfaceError | psycopg2.OperationalError) and not code
        if lost or code[:2] in _TRANSIENT_CLASSES:
            raise TransientError(
                f"the prediction store at {address.host}:{address.port} is unreachable "
                f"({detail}); try again"
            ) from None
        raise ConfigError(
            f"the prediction store {address} cannot be used ({detail}): check that the "
            f"user in {_SETTING} may read and write the sluice_* tables"
        ) from None


def ensure_schema(connection: pg.connection, address: StoreAddress) -> None:
    """Create the tables, or migrate a store of an older schema, in one transaction under an
    advisory lock (one process of several starting at once does it), or check that an existing
    store is of this schema."""
    with postgres_errors(address), connection.cursor() as cursor:
        version = _version(cursor)
        if version is None or version in _MIGRATIONS:
            connection.autocommit = False
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                version = _version(cursor)  # another process may have created it meanwhile
                if version is None:
                    cursor.execute(_CREATE, (SCHEMA_VERSION,))
                    version = SCHEMA_VERSION
                elif version in _MIGRATIONS:
                    cursor.execute(_MIGRATIONS[version])
                    version = SCHEMA_VERSION
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.autocommit = True
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"the prediction store {address} has schema version {version}, this Sluice knows "
            f"{SCHEMA_VERSION}: run the Sluice that wrote it, or point {_SETTING} at another "
            "database"
        )


def _version(cursor: pg.cursor) -> int | None:
    """The store's schema version; None when it has no schema yet (0 for an empty table)."""
    # pg_tables under the statement's snapshot: to_regclass reads a cached catalog snapshot,
    # which may not show a table another process created while we waited for the lock.
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_tables"
        " WHERE schemaname = current_schema() AND tablename = 'sluice_schema')"
    )
    found = cursor.fetchone()
    if not (found and found[0]):
        return None
    cursor.execute("SELECT version FROM sluice_schema")
    row = cursor.fetchone()
    return 0 if row is None else int(row[0])
