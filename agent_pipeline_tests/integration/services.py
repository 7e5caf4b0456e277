"""Real Postgres, Redis and Chromium for the integration tests, from Debian's packages.

Nothing is installed here: ``scripts/ci_services.sh`` (called by ``.ci/run``) installs the
packages. A test skips, naming the missing binary and the script, only when a binary is absent.
Servers run in temp folders, on loopback, on free ports, each in its own process group with
default signal dispositions (DEPS.md G12), and are stopped by group. Postgres refuses to run as
root, so under root it runs as Debian's ``postgres`` system user (created by the package).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_pipeline.lib.core import processes
from agent_pipeline.lib.core.settings import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
INSTALL_HINT = "install it with `bash scripts/ci_services.sh` (Debian packages; .ci/run does)"


def binary(name: str, *patterns: str) -> str:
    """The path of ``name`` on PATH or at one of ``patterns``; skip the test when absent."""
    found = shutil.which(name) or next((p for pat in patterns for p in sorted(glob.glob(pat))[-1:]), None)
    if not found:
        pytest.skip(f"`{name}` not found: {INSTALL_HINT}")
    return found


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    proc: subprocess.Popen
    folder: Path

    def url(self, db: str) -> str:
        """libpq URL (psycopg2.connect)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def sqlalchemy_url(self, db: str) -> str:
        """SQLAlchemy URL (MLFLOW_TRACKING_URI): SQLAlchemy 2.1's plain postgresql:// means psycopg 3,
        which is not installed; psycopg2 is (dagster-postgres's driver)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def query(self, db: str, sql: str, params=()) -> list[tuple]:
        import psycopg2

        conn = psycopg2.connect(self.url(db))
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def dagster_env(self, db: str) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db,
        }


def start_postgres() -> Postgres:
    initdb = binary("initdb", "/usr/lib/postgresql/*/bin/initdb")
    server = str(Path(initdb).resolve().parent / "postgres")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` system user to run the server as: " + INSTALL_HINT)
        run_as = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="agent-pipeline-pg-"))
    password = "integration-" + os.urandom(6).hex()
    (folder / "pw").write_text(password + "\n")
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chown(folder / "pw", entry.pw_uid, entry.pw_gid)
    subprocess.run(
        [initdb, "-D", str(folder / "data"), "-U", "agent", f"--pwfile={folder / 'pw'}", "-E", "UTF8",
         "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"],
        check=True, capture_output=True, user=run_as, group=pwd.getpwnam(run_as).pw_gid if run_as else None,
        extra_groups=[] if run_as else None, cwd=folder,
    )  # fmt: skip
    port = processes.free_port()
    proc = processes.start_group(
        [server, "-D", str(folder / "data"), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={folder}", "-c", "max_connections=200"],
        log_path=folder / "postgres.log", cwd=folder, user=run_as,
    )  # fmt: skip
    pg = Postgres("127.0.0.1", port, "agent", password, proc, folder)
    try:
        processes.wait_until(lambda: proc.poll() is None and pg.query("postgres", "select 1"), 30, what="postgres up")
    except Exception:
        stop_postgres(pg)
        raise
    return pg


def stop_postgres(pg: Postgres) -> None:
    processes.stop_group(pg.proc, signal.SIGINT)  # fast shutdown: disconnects clients
    shutil.rmtree(pg.folder, ignore_errors=True)


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen
    folder: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def start_redis() -> Redis:
    server = binary("redis-server")
    folder = Path(tempfile.mkdtemp(prefix="agent-pipeline-redis-"))
    port = processes.free_port()
    proc = processes.start_group(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--daemonize", "no"],
        log_path=folder / "redis.log", cwd=folder,
    )  # fmt: skip
    import redis

    rd = Redis(port, proc, folder)
    try:
        processes.wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), 20, what="redis up")
    except Exception:
        stop_redis(rd)
        raise
    return rd


def stop_redis(rd: Redis) -> None:
    processes.stop_group(rd.proc)
    shutil.rmtree(rd.folder, ignore_errors=True)
