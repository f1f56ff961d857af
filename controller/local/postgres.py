"""Start a throwaway PostgreSQL server on 127.0.0.1 as MLflow's backend store.

PostgreSQL needs more care than the other services (``initdb`` on first use, running as the
``postgres`` OS user when we are root, a private socket directory, "fast" shutdown by SIGINT),
so its launcher lives here rather than in :mod:`controller.local.services`, which holds the
shared :class:`LocalService` handle it builds on.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import ConfigError, TransientError
from controller.local.processes import ManagedProcess, free_port
from controller.local.services import LocalService

__all__ = ["PostgresService", "start_postgres"]


@dataclass
class PostgresService(LocalService):
    """A PostgreSQL server with trust authentication for the ``postgres`` role."""

    data_dir: Path
    socket_dir: Path

    def url(self, database: str = "postgres") -> str:
        """libpq URL of ``database`` on this server (psycopg2, psql)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_url(self, database: str = "postgres") -> str:
        """The URL for SQLAlchemy and so for ``mlflow server --backend-store-uri``.

        SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed.
        """
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` unless it exists; return its URL."""
        import psycopg2  # imported when used
        from psycopg2 import sql

        conn = psycopg2.connect(self.url())
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT to the postmaster), then remove the socket directory."""
        super().stop(timeout)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def start_postgres(
    *,
    data_dir: Path,
    port: int | None = None,
    log_dir: Path,
    fsync: bool = True,
    timeout: float = 60.0,
) -> PostgresService:
    """Start PostgreSQL on ``data_dir``, running ``initdb`` first if the directory is empty.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` OS user, which
    must be able to reach ``data_dir`` (every parent directory searchable). ``fsync=False``
    trades crash safety for speed, which is right for tests.
    """
    bindir = _postgres_bindir()
    user = _postgres_os_user()
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
    for path in (data_dir, socket_dir):
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700)
    if user is not None:
        _require_reachable(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bindir, data_dir, user, log_dir / "initdb.log", fsync=fsync)
    argv = [str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir)]
    argv += ["-c", "listen_addresses=127.0.0.1"]
    if not fsync:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    process = ManagedProcess(
        argv,
        log_path=log_dir / "postgres.log",
        cwd=data_dir,
        name="PostgreSQL",
        user=user.pw_name if user else None,
        stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
        # The postmaster stops its children; each runs in a session of its own anyway.
        signal_group=False,
    )
    service = PostgresService(process.start(), port, data_dir, socket_dir)
    try:
        process.wait_ready(functools.partial(_postgres_accepts, service.url()), timeout)
    except TransientError:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return service


def _postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version_key(p.parent.name), reverse=True)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise ConfigError(
        "PostgreSQL server binaries (initdb, postgres) not found: apt-get install -y postgresql "
        "or put their directory on PATH"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _postgres_os_user() -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as: ``postgres`` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError(
            "PostgreSQL cannot run as root and there is no 'postgres' OS user: "
            "apt-get install -y postgresql (creates it) or run as a non-root user"
        ) from None


def _require_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Fail early, with the fix, when ``user`` cannot search a parent of ``path``."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_mode & 0o001:
            continue
        if st.st_uid == user.pw_uid and st.st_mode & 0o100:
            continue
        if st.st_gid in groups and st.st_mode & 0o010:
            continue
        raise ConfigError(
            f"the {user.pw_name} OS user cannot reach {path} because {parent} is not searchable "
            f"by it: put the data directory elsewhere (e.g. under /tmp) or chmod o+x {parent}"
        )


def _initdb(
    bindir: Path, data_dir: Path, user: pwd.struct_passwd | None, log_path: Path, *, fsync: bool
) -> None:
    argv = [str(bindir / "initdb"), "-D", str(data_dir), "--auth=trust", "-U", "postgres"]
    argv += ["--encoding=UTF8", "--locale=C"] + ([] if fsync else ["--no-sync"])
    as_user: dict[str, Any] = {}
    if user is not None:
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    done = subprocess.run(
        argv, cwd=data_dir, capture_output=True, text=True, check=False, timeout=300, **as_user
    )
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise ConfigError(f"initdb failed for {data_dir} (log {log_path}): {tail}")


def _postgres_accepts(url: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True
