"""meterlab — real components for meterd's integration tests, benchmarks and the local demo.

Runs Debian's /usr/bin/python3 (python3-kafka, python3-msgpack). Everything is real: a
PostgreSQL cluster made with initdb and started with pg_ctl on a private Unix socket (as
PgBouncer's test suite does), the mock Kafka cluster in its own process (tools/mockbroker), and
the meterd binary itself. Clients are independent of meterd's code: python3-kafka produces and
consumes, psql queries.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the cluster is created
and started as the `postgres` user through runuser.
"""

import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.environ.get("METERD_SOURCE") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("METERD_BUILD") or os.path.join(SOURCE, "build")
PG_BIN = "/usr/lib/postgresql/15/bin"
PRICES = os.path.join(SOURCE, "deploy", "prices.ini")
TIERS = os.path.join(SOURCE, "deploy", "tiers.ini")
# python3-kafka cannot probe the mock broker's API versions reliably; pin one it speaks.
KAFKA_API = (2, 5, 0)


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, flush=True)


def wait_for(pred, timeout, what, interval=0.1):
    """Polls pred() until it returns a truthy value; fails the test after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


class Postgres:
    """A throw-away PostgreSQL 15 cluster listening only on a Unix socket in its directory."""

    def __init__(self, base=None, fsync=False, port=5432):
        self.tmp = base is None
        self.dir = base or tempfile.mkdtemp(prefix="meterd-pg-")
        os.chmod(os.path.dirname(self.dir) if base else self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sock = self.dir
        self.port = port
        self.fsync = fsync
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, argv, **kw):
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (argv, r.returncode,
                                                       r.stdout.decode(errors="replace")))
        return r

    def _postgres_reaches(self, path):
        return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", path]).returncode == 0

    def _shadow(self):
        """When the postgres user cannot reach the cluster's directory (a private home such as
        /root, or a 0700 temporary directory), or its socket path would pass the 107-byte limit
        of Unix sockets, the cluster lives in /var/tmp and the directory becomes a symlink."""
        parent = os.path.dirname(os.path.abspath(self.dir))
        long_sock = len(os.path.join(self.dir, ".s.PGSQL.%d" % self.port)) > 100
        if not long_sock and (not self.as_root or self._postgres_reaches(parent)):
            return
        digest = hashlib.sha1(os.path.abspath(self.dir).encode()).hexdigest()[:12]
        shadow = "/var/tmp/meterd-pg-" + digest
        os.makedirs(shadow, exist_ok=True)
        os.chmod(shadow, 0o755)
        if os.path.isdir(self.dir) and not os.path.islink(self.dir) and not os.listdir(self.dir):
            os.rmdir(self.dir)
        if not os.path.lexists(self.dir):
            os.makedirs(parent, exist_ok=True)
            os.symlink(shadow, self.dir)
        log("PostgreSQL cluster in %s (symlinked from %s): %s" % (
            shadow, self.dir, "socket path too long" if long_sock
            else "the postgres user cannot reach %s" % parent))
        self.dir = self.sock = shadow
        self.data = os.path.join(shadow, "data")

    def start(self):
        self._shadow()
        os.makedirs(self.dir, exist_ok=True)
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self._run([PG_BIN + "/initdb", "-D", self.data, "-U", "meterd", "--auth=trust",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        opts = ("-c listen_addresses='' -c unix_socket_directories='%s' -p %d "
                "-c max_connections=50 -c shared_buffers=256MB -c fsync=%s "
                "-c synchronous_commit=%s -c full_page_writes=%s -c log_min_messages=warning "
                "-c max_wal_size=4GB"
                % (self.sock, self.port, "on" if self.fsync else "off",
                   "on" if self.fsync else "off", "on" if self.fsync else "off"))
        self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-o", opts, "-w", "-t", "60",
                   "-l", os.path.join(self.dir, "postgres.log"), "start"])
        self.started = True
        if not self.psql("SELECT 1 FROM pg_database WHERE datname = 'meterd'", db="postgres"):
            self.psql("CREATE DATABASE meterd", db="postgres")
        return self

    def stop(self, mode="fast"):
        if self.started:
            try:
                self._run([PG_BIN + "/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])
            except RuntimeError as e:
                log("pg_ctl stop failed:", e)
            self.started = False

    def cleanup(self):
        self.stop()
        if self.tmp:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, db="meterd"):
        return "host=%s port=%d dbname=%s user=meterd" % (self.sock, self.port, db)

    def createdb(self, name):
        self.psql("CREATE DATABASE %s" % name, db="postgres")
        return self.dsn(name)

    def psql(self, sql, db="meterd"):
        """Runs sql with psql and returns rows as lists of strings."""
        out = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-h", self.sock, "-p", str(self.port), "-U", "meterd", "-d", db, "-c", sql],
            check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode()
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def scalar(self, sql, db="meterd"):
        rows = self.psql(sql, db)
        return rows[0][0] if rows else None


class Broker:
    """tools/mockbroker: librdkafka's mock cluster in its own process."""

    def __init__(self, partitions=16, brokers=1, topics=None):
        self.partitions = partitions
        self.brokers = brokers
        self.topics = topics
        self.proc = None
        self.bootstrap = None

    def start(self):
        argv = [os.path.join(BUILD, "mockbroker"), "--brokers", str(self.brokers),
                "--partitions", str(self.partitions)]
        for t in self.topics or []:
            argv += ["--topic", t]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        self.bootstrap = self.proc.stdout.readline().decode().strip()
        if not self.bootstrap:
            raise RuntimeError("mockbroker did not print its bootstrap address")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Daemon:
    """One meterd process; its log lines go to a file (JSON lines)."""

    def __init__(self, name, brokers, dsn, logdir, group="meterd", extra=None, env=None):
        self.name = name
        self.brokers = brokers
        self.dsn = dsn
        self.group = group
        self.extra = list(extra or [])
        self.env = dict(os.environ, **(env or {}))
        self.logpath = os.path.join(logdir, "%s.log" % name)
        self.proc = None
        self.starts = 0
        # Each instance serves HTTP on ports of its own (several run side by side); the same
        # ports across restarts.
        self.http_port = free_port()
        self.admin_port = free_port()

    def url(self, path, admin=False):
        return "http://127.0.0.1:%d%s" % (self.admin_port if admin else self.http_port, path)

    def argv(self):
        return [os.path.join(BUILD, "meterd"),
                "--kafka.brokers=" + self.brokers,
                "--kafka.group_id=" + self.group,
                "--kafka.session_timeout_ms=6000",
                "--kafka.fetch_wait_max_ms=10",
                "--postgres.dsn=" + self.dsn,
                "--meter.prices_file=" + PRICES,
                "--meter.tiers_file=" + TIERS,
                "--meter.instance_id=" + self.name,
                "--meter.flush_interval_ms=100",
                "--meter.stats_interval_ms=2000",
                "--http.listen=127.0.0.1:%d" % self.http_port,
                "--http.admin_listen=127.0.0.1:%d" % self.admin_port] + self.extra + \
            os.environ.get("METERD_TEST_DAEMON_ARGS", "").split()

    def start(self):
        self.starts += 1
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=logf, env=self.env)
        logf.close()
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.running():
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                return self.proc.wait(30)
        return None

    def stop(self, timeout=30):
        """Graceful stop: SIGTERM and wait; returns the exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("%s did not stop within %ss" % (self.name, timeout))

    def stats(self):
        """The daemon's last "stats" log line (a dict), or {} before the first."""
        lines = [x for x in self.log_lines() if x.get("msg") == "stats"]
        return lines[-1] if lines else {}

    def log_lines(self):
        import json
        out = []
        try:
            with open(self.logpath, "rb") as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        out.append({"msg": line.decode(errors="replace").rstrip()})
        except FileNotFoundError:
            pass
        return out

    def tail(self, n=30):
        try:
            with open(self.logpath, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except FileNotFoundError:
            return ""


def producer(bootstrap, **kw):
    import kafka
    args = dict(bootstrap_servers=bootstrap, api_version=KAFKA_API, linger_ms=20,
                batch_size=256 * 1024, acks="all", max_in_flight_requests_per_connection=1,
                retries=5)
    args.update(kw)
    return kafka.KafkaProducer(**args)


def publish(prod, topic, messages):
    """Publishes (key, value) pairs in order; returns {partition: next offset} for the topic."""
    futures = [prod.send(topic, key=k, value=v) for k, v in messages]
    prod.flush()
    ends = {}
    for f in futures:
        md = f.get(timeout=60)
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    return ends


class LivePublisher:
    """Publishes messages in chunks, one chunk every `pause` seconds on a fixed schedule (so the
    rate does not drift), in a thread, as a live stream. After join(), `ends` holds
    {partition: next offset} of what was published; `done` is set once everything is
    acknowledged."""

    def __init__(self, bootstrap, messages, chunk, pause, topic="usage.events"):
        self.bootstrap, self.messages, self.chunk, self.pause = bootstrap, messages, chunk, pause
        self.topic = topic
        self.ends = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        prod = producer(self.bootstrap)
        futures = []
        t0 = time.time()
        for n, i in enumerate(range(0, len(self.messages), self.chunk)):
            for k, v in self.messages[i:i + self.chunk]:
                futures.append(prod.send(self.topic, key=k, value=v))
            delay = t0 + (n + 1) * self.pause - time.time()
            if delay > 0:
                time.sleep(delay)
        prod.flush()
        for f in futures:
            md = f.get(timeout=60)
            self.ends[md.partition] = max(self.ends.get(md.partition, 0), md.offset + 1)
        prod.close()
        self.done.set()

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join()


def kill_loop(d, rng, done, min_kills):
    """Starts d and kills it with SIGKILL at random moments until `done` is set and at least
    min_kills kills happened while it owned partitions and consumed (some more land during
    start-up: claim, loading, group join). Leaves d stopped. Returns (consuming, starting)."""
    consuming_kills = starting_kills = 0

    def ready_count():
        return sum(1 for x in d.log_lines() if x.get("msg") == "partition ready")

    while not (done.is_set() and consuming_kills >= min_kills):
        d.start()
        before = ready_count()
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0.0, 3.0))
        else:
            wait_for(lambda: ready_count() > before, 60, "partitions to be assigned")
            time.sleep(rng.uniform(0.05, 2.5))
        consuming = ready_count() > before
        assert d.running(), "daemon died on its own:\n" + d.tail()
        d.kill()
        if consuming:
            consuming_kills += 1
        else:
            starting_kills += 1
        log("SIGKILL #%d (%s)" % (consuming_kills + starting_kills,
                                 "consuming" if consuming else "starting"))
    return consuming_kills, starting_kills


def read_topic(bootstrap, topic, ends=None, timeout=60):
    """Reads a whole topic (every partition from the beginning up to its end) with python-kafka.
    Returns a list of ConsumerRecord."""
    import kafka
    from kafka import TopicPartition
    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, api_version=KAFKA_API,
                            enable_auto_commit=False, fetch_max_wait_ms=10,
                            consumer_timeout_ms=1000)
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    if ends is None:
        ends = {tp.partition: off for tp, off in c.end_offsets(tps).items()}
    out = []
    deadline = time.time() + timeout
    pos = {tp.partition: 0 for tp in tps}
    while any(pos[p] < ends.get(p, 0) for p in pos):
        if time.time() > deadline:
            raise AssertionError("timed out reading %s: at %s, want %s" % (topic, pos, ends))
        for tp, recs in c.poll(timeout_ms=200).items():
            for r in recs:
                out.append(r)
                pos[tp.partition] = r.offset + 1
    c.close()
    return out


def checkpoint_offsets(pg, topic="usage.events", db="meterd"):
    rows = pg.psql("SELECT partition, coalesce(next_offset, 0) FROM consumer_checkpoints "
                   "WHERE topic = '%s'" % topic, db)
    return {int(p): int(o) for p, o in rows}


def caught_up(pg, ends, topic="usage.events", db="meterd"):
    try:
        got = checkpoint_offsets(pg, topic, db)
    except subprocess.CalledProcessError:
        return False  # schema not created yet
    return all(got.get(p, 0) >= e for p, e in ends.items())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Lab:
    """A PostgreSQL cluster, a mock broker and any number of daemons, torn down together."""

    def __init__(self, name, partitions=16, fsync=False):
        self.dir = tempfile.mkdtemp(prefix="meterd-%s-" % name)
        os.chmod(self.dir, 0o755)  # the postgres user must reach its directory inside
        self.pg = Postgres(os.path.join(self.dir, "pg"), fsync=fsync)
        self.broker = Broker(partitions=partitions)
        self.daemons = []
        self.keep = os.environ.get("METERD_KEEP") == "1"

    def __enter__(self):
        self.pg.start()
        self.broker.start()
        log("lab:", self.dir, "broker", self.broker.bootstrap)
        return self

    def daemon(self, name, dsn=None, **kw):
        d = Daemon(name, self.broker.bootstrap, dsn or self.pg.dsn(), self.dir, **kw)
        self.daemons.append(d)
        return d

    def __exit__(self, exc_type, exc, tb):
        for d in self.daemons:
            if d.running():
                d.kill()
        if exc_type is not None:
            for d in self.daemons:
                sys.stderr.write("---- last log lines of %s ----\n%s\n" % (d.name, d.tail(40)))
        self.broker.stop()
        self.pg.stop()
        if not self.keep and exc_type is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif exc_type is not None:
            sys.stderr.write("lab kept for inspection: %s\n" % self.dir)
        return False
