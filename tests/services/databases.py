"""PostgreSQL 15, MariaDB 10.11, Redis 7 (and mongod, where installed) on free loopback ports, in private dirs.

Each server is an object with ``start()`` (waits until it answers), ``stop()`` and ``cleanup()``; the data
directory survives ``stop()`` so a test can start the same server again on the same port. Data lives in
a directory of its own under the system temp dir — not pytest's, which the ``postgres`` user cannot
enter — and ``cleanup()`` removes it. As root, PostgreSQL runs as the ``postgres`` user (initdb refuses
root) and MariaDB with ``--user=root``. Durability is off everywhere: these are throwaway test servers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import redis

from tests.support import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADBD = "/usr/sbin/mariadbd"
REDIS_SERVER = "redis-server"
START_TIMEOUT = 30.0


def missing(*programs: str | Path) -> str | None:
    """Why these programs cannot run here (the first one not installed), or None."""
    for program in programs:
        if shutil.which(str(program)) is None:
            return f"{program} is not installed (make test installs it)"
    return None


def wait_until(ready: Callable[[], Any], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll ``ready()`` until it returns without raising; fail early if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        try:
            ready()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer within {START_TIMEOUT:g}s:\n{_tail(log)}") from None
            time.sleep(0.05)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Server:
    """A server process on a loopback port with a private directory; subclasses say how to run it."""

    name = "server"
    stop_signal = signal.SIGTERM
    run_as: str | None = None

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"qwq-{self.name}-"))
        self.log = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        if self.run_as and os.geteuid() == 0:
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        else:
            self.run_as = None
        try:
            self.prepare()
        except BaseException:
            self.cleanup()
            raise

    def prepare(self) -> None:
        """Create the data directory (initdb and the like)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        """Raise unless the server answers."""
        raise NotImplementedError

    def run(self, args: Sequence[str | Path]) -> None:
        """Run a setup command (as the service user), failing with its output."""
        done = subprocess.run([str(a) for a in args], user=self.run_as, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stdout + done.stderr).decode()[-2000:]}")

    def start(self) -> None:
        """Start the server and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), user=self.run_as, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        try:
            wait_until(self.ready, self.process, f"{self.name} on port {self.port}", self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown; killed after 15 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres(Server):
    """A PostgreSQL 15 cluster: superuser ``postgres`` over the Unix socket (trust), passwords over TCP."""

    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown: SIGTERM would wait for clients to disconnect
    run_as = "postgres"

    def __init__(self, port: int | None = None, *, primary: Postgres | None = None) -> None:
        self.primary = primary
        self.settings: dict[str, Any] = {}
        """Extra server settings (``-c name=value``), read by every ``start()``."""
        super().__init__(port)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def prepare(self) -> None:
        if self.primary is None:
            auth = ["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"]
            fast = ["--no-sync", "--no-instructions", "--locale=C", "-E", "UTF8"]
            self.run([PG_BIN / "initdb", "-D", self.data, *auth, *fast])
        else:  # a streaming standby of the primary, following it over its Unix socket
            source = ["-h", self.primary.dir, "-p", str(self.primary.port), "-U", "postgres"]
            self.run(
                [
                    PG_BIN / "pg_basebackup",
                    *source,
                    "-D",
                    self.data,
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                    "--checkpoint=fast",
                ]
            )

    def command(self) -> list[str]:
        settings = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": self.dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": 40,
            "max_wal_senders": 4,
            **self.settings,
        }
        return [str(PG_BIN / "postgres"), "-D", str(self.data), *(f"-c{k}={v}" for k, v in settings.items())]

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """A superuser connection in autocommit mode."""
        return psycopg.connect(host=str(self.dir), port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def ready(self) -> None:
        with self.connect() as connection:
            connection.execute("SELECT 1")

    def sql(self, query: str, params: Sequence[Any] | None = None, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run statements as the superuser (several only without params); the rows of the last, if any."""
        with self.connect(dbname) as connection:
            cursor = connection.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


class MariaDB(Server):
    """A MariaDB 10.11 server: root over the Unix socket without a password, others over TCP."""

    name = "mariadb"

    def __init__(self, port: int | None = None, *, server_id: int = 1, binlog: bool = False) -> None:
        self.server_id = server_id
        self.binlog = binlog
        super().__init__(port)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket(self) -> Path:
        return self.dir / "mysqld.sock"

    def prepare(self) -> None:
        root = ["--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]
        self.run([MARIADB_INSTALL_DB, "--no-defaults", f"--datadir={self.data}", *root, "--innodb-log-file-size=8M"])

    def command(self) -> list[str]:
        where = [f"--datadir={self.data}", f"--socket={self.socket}", f"--pid-file={self.dir / 'mysqld.pid'}"]
        network = [f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve"]
        small = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M", "--performance-schema=off"]
        fast = ["--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0"]
        replication = [f"--server-id={self.server_id}", *(["--log-bin=binlog"] if self.binlog else [])]
        head = [MARIADBD, "--no-defaults", "--user=root", f"--log-error={self.log}"]
        return head + where + network + small + fast + replication

    def connect(self) -> pymysql.connections.Connection[Any]:
        """A root connection over the Unix socket, autocommit."""
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True, connect_timeout=5)

    def ready(self) -> None:
        self.connect().close()

    def sql(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as root; the rows of the last."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return list(cursor.fetchall())
        finally:
            connection.close()


class Redis(Server):
    """A Redis 7 server on loopback with a password and a Unix socket; nothing persisted."""

    name = "redis"

    def __init__(
        self, port: int | None = None, *, password: str, replica_of: Redis | None = None, users: Sequence[str] = ()
    ) -> None:
        self.password = password
        self.replica_of = replica_of
        self.users = users
        """ACL rules (``"name on >password +info"``), set at every start: a restart keeps them."""
        super().__init__(port)

    @property
    def socket(self) -> Path:
        return self.dir / "redis.sock"

    def command(self) -> list[str]:
        network = ["--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", str(self.socket)]
        volatile = ["--dir", str(self.dir), "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"]
        args = [REDIS_SERVER, *network, *volatile, "--requirepass", self.password]
        for rule in self.users:
            args += ["--user", *rule.split()]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of.port), "--masterauth", self.password]
        return args

    def client(self) -> redis.Redis:
        """A client over the Unix socket."""
        return redis.Redis(unix_socket_path=str(self.socket), password=self.password, socket_timeout=5)

    def ready(self) -> None:
        with self.client() as client:
            client.ping()


class Mongod(Server):
    """A standalone mongod, only where the binary exists (MongoDB is not in Debian)."""

    name = "mongod"

    def command(self) -> list[str]:
        return ["mongod", "--dbpath", str(self.dir), "--port", str(self.port), "--bind_ip", "127.0.0.1"]

    def ready(self) -> None:
        import pymongo

        with pymongo.MongoClient("127.0.0.1", self.port, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")


__all__ = ["MariaDB", "Mongod", "Postgres", "Redis", "Server", "missing", "wait_until"]
