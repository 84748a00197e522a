#!/usr/bin/python3
"""run_bench — meterd's end-to-end throughput benchmark and its raw baselines, in one run.

    /usr/bin/python3 bench/run_bench.py [--events N] [--runs R] [--profile] ...

What it does, on one machine, with real components (tests/lib/meterlab.py):

 1. Starts a throw-away PostgreSQL 15 with fsync, synchronous_commit and full_page_writes ON
    (what production runs; the integration tests turn them off) and the mock Kafka broker with
    64 partitions per topic.
 2. prefill: produces N seeded llm.call events (default 1,000,000) and checks that the mock kept
    all of them (it keeps only 5 MiB per partition): every low watermark 0, every high watermark
    equal to the count delivered there.
 3. consume_baseline, R times: raw librdkafka consume of the whole topic with meterd's consumer
    settings (the Kafka-side ceiling); then once with msgpack decoding of every event, with
    meterd's settings and with a deep local queue (queued.min.messages 10M), which shows
    librdkafka 2.0.2's 1 s fetch stall whenever 100,000 messages wait in the consumer queue.
 4. copy_baseline, R times: N rows of one narrow identity row per event (the applied_events table
    meterd had up to abc9ea9) by binary COPY in transactions of 50,000 rows that also advance 64
    checkpoint rows (the PostgreSQL-side anchor), with primary and foreign key, with the primary
    key only, and on a bare heap.
 5. End to end, R times, each against a fresh database and consumer group: starts meterd with
    its default settings (apart from fetch.wait.max.ms 10, which the mock broker needs) and
    times from its first "partition ready" log line (all partitions claimed in PostgreSQL and
    assigned from offset 0) until every partition's checkpoint in consumer_checkpoints equals
    the prefill's end offset. Then it checks that nothing was lost or doubled: sum(calls) in
    cost_records and the identities recorded (rows of applied_events, or the n of
    applied_event_ids) both equal N, and meterd's stats report no
    duplicate and no dead letter. It also records the CPU seconds of every process taking part
    (meterd per thread, the PostgreSQL backend and helpers, the mock broker, this observer, and
    what the rest of the machine used), and the duration of every statement meterd's flushes
    ran (log_min_duration_statement = 0 on the benchmark database only).
 6. With --profile, one more end-to-end run under `perf record -a -g -e cpu-clock` (system-wide,
    so PostgreSQL and the broker show up next to meterd); its rate is reported apart and never
    counts as a result.

The machine has two cores shared by meterd, librdkafka's threads, the PostgreSQL backend and the
mock broker, and possibly by other people's work: before each measurement the script waits (up
to --quiet-wait seconds) for the rest of the machine to go idle, and every end-to-end run
reports the CPU seconds the rest of the machine used during it.

What-if knobs, for finding where the time goes (never the headline figure): --setup-sql runs
SQL on each fresh database after `meterd migrate` (e.g. drop an index), --instances K runs K
meterd instances in one consumer group (K PostgreSQL connections), --daemon-arg passes a flag to
meterd, --orgs changes the cost-record cardinality.

Results: a JSON file under bench/results/ (gitignored) and a markdown table on stdout. Nothing
here fails because the machine is slow: performance is measured, never asserted. The run fails
only if the benchmark itself is invalid (the broker dropped events, or meterd lost or doubled
some).
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, ".."))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1000000, help="events to pre-fill (1,000,000)")
    ap.add_argument("--orgs", type=int, default=10000, help="organizations (10,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=64, help="input topic partitions (64)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (3)")
    ap.add_argument("--copy-batch", type=int, default=50000,
                    help="rows per COPY transaction in the COPY baseline (meterd's "
                         "meter.flush_max_events default, 50,000)")
    ap.add_argument("--linger-ms", type=int, default=50, help="prefill producer linger.ms")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="extra meterd flag, e.g. --daemon-arg=--meter.flush_max_events=100000")
    ap.add_argument("--setup-sql", default=None,
                    help="what-if experiments: run `meterd migrate` on each fresh database, then "
                         "this SQL, before meterd starts (e.g. drop an index); never a result")
    ap.add_argument("--instances", type=int, default=1,
                    help="meterd instances in one consumer group (scale-out; default 1)")
    ap.add_argument("--no-baselines", action="store_true", help="end to end only")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="before each measurement, wait up to this many seconds for the rest of "
                         "the machine to go idle (300)")
    ap.add_argument("--quiet-threshold", type=float, default=0.25,
                    help="'idle' means fewer busy cores than this over 2 s (0.25)")
    ap.add_argument("--profile", action="store_true",
                    help="one extra end-to-end run under perf record (system-wide)")
    ap.add_argument("--build", default=os.environ.get("METERD_BUILD") or
                    os.path.join(SOURCE, "build"), help="CMake build directory")
    ap.add_argument("--label", default="", help="free text stored with the results")
    ap.add_argument("--copy-variants", default="full,pk,heap",
                    help="tables of the COPY baseline (copy_baseline --variants)")
    ap.add_argument("--out", default=None, help="result JSON path (default bench/results/...)")
    ap.add_argument("--timeout", type=float, default=600, help="per end-to-end run, seconds")
    return ap.parse_args()


ARGS = parse_args()
os.environ["METERD_BUILD"] = os.path.abspath(ARGS.build)
sys.path.insert(0, os.path.join(SOURCE, "tests", "lib"))
import meterlab  # noqa: E402  (needs METERD_BUILD set first)
from meterlab import log  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DEEP_QUEUE = ["--set", "queued.min.messages=10000000", "--set", "queued.max.messages.kbytes=2097151"]
BENCH_BIN = os.path.join(meterlab.BUILD, "bench")


# ---------- small helpers ----------

def run_json(argv, timeout=900):
    """Runs one of the bench/ programs and returns its JSON output."""
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (os.path.basename(argv[0]), r.returncode,
                                                   r.stderr.decode(errors="replace"),
                                                   r.stdout.decode(errors="replace")))
    return json.loads(r.stdout)


def median(xs):
    return statistics.median(xs) if xs else None


def read_text(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def cmd_out(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              timeout=30).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    cpu = re.search(r"model name\s*:\s*(.*)", read_text("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+)", read_text("/proc/meminfo"))
    git = cmd_out(["git", "-C", SOURCE, "rev-parse", "--short", "HEAD"])
    dirty = cmd_out(["git", "-C", SOURCE, "status", "--porcelain", "--", "daemon", "schemas",
                     "CMakeLists.txt"])
    return {
        "cpu": cpu.group(1) if cpu else "?",
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1048576, 1) if mem else None,
        "kernel": platform.release(),
        "os": cmd_out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "librdkafka": cmd_out(["pkg-config", "--modversion", "rdkafka"]),
        "msgpack_c": cmd_out(["pkg-config", "--modversion", "msgpack"]),
        "postgresql": cmd_out([meterlab.PG_BIN + "/postgres", "--version"]),
        "source_commit": git + ("+uncommitted daemon changes" if dirty else ""),
        "meterd_binary": os.path.join(meterlab.BUILD, "meterd"),
        "meterd_sha256": cmd_out(["sha256sum", os.path.join(meterlab.BUILD, "meterd")])[:16],
        "loadavg_before": read_text("/proc/loadavg").split()[:3],
    }


# ---------- CPU accounting from /proc ----------

def proc_stat(pid):
    """(comm, utime+stime seconds) of a process or thread, or None if it is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    fields = s[s.rindex(")") + 2:].split()
    return comm, (int(fields[11]) + int(fields[12])) / TICK


def threads(pid):
    """{tid: (comm, cpu seconds)} for every thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        st = proc_stat("%d/task/%s" % (pid, tid))
        if st:
            out[tid] = st
    return out


def postgres_procs(pg):
    """{pid: title} of the postmaster of this benchmark's cluster and its children (other
    PostgreSQL clusters on the machine are not ours)."""
    try:
        postmaster = int(read_text(os.path.join(pg.data, "postmaster.pid")).split()[0])
    except (IndexError, ValueError):
        return {}
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        s = read_text("/proc/%s/stat" % pid)
        if not s:
            continue
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        if int(pid) == postmaster or ppid == postmaster:
            out[int(pid)] = read_text("/proc/%s/cmdline" % pid).replace("\0", " ").strip()
    return out


def machine_busy():
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    f = read_text("/proc/stat").splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / TICK


class CpuSnapshot:
    def __init__(self, pg, daemon_pids, broker_pid, observer_pids, pg_backend_pids):
        self.t = time.time()
        self.machine = machine_busy()
        self.daemon = {}
        for pid in daemon_pids:
            self.daemon.update(threads(pid))
        self.broker = sum(c for _, c in threads(broker_pid).values())
        self.observer = sum((proc_stat(p) or ("", 0))[1] for p in observer_pids)
        self.pg = {}
        for pid, title in postgres_procs(pg).items():
            st = proc_stat(pid)
            if st:
                self.pg[pid] = (title, st[1])
        self.pg_backend_pids = set(pg_backend_pids)


def cpu_delta(a, b):
    """CPU seconds used between two snapshots, by component."""
    out = {"wall_seconds": b.t - a.t}
    by_thread = {}
    for tid, (comm, cpu) in b.daemon.items():
        c0 = a.daemon.get(tid, (comm, 0.0))[1]
        name = comm if not comm.startswith("rdk:broker") else "rdk:broker*"
        by_thread[name] = by_thread.get(name, 0.0) + cpu - c0
    out["meterd_threads"] = {k: round(v, 3) for k, v in sorted(by_thread.items())}
    out["meterd"] = round(sum(by_thread.values()), 3)
    pg_backend = pg_other = 0.0
    for pid, (title, cpu) in b.pg.items():
        used = cpu - a.pg.get(pid, (title, 0.0))[1]
        if pid in b.pg_backend_pids:
            pg_backend += used
        else:
            pg_other += used
    out["postgres_backend"] = round(pg_backend, 3)
    out["postgres_other"] = round(pg_other, 3)
    out["mockbroker"] = round(b.broker - a.broker, 3)
    out["observer"] = round(b.observer - a.observer, 3)
    out["machine_busy"] = round(b.machine - a.machine, 3)
    out["rest_of_machine"] = round(out["machine_busy"] - out["meterd"] - pg_backend - pg_other -
                                   out["mockbroker"] - out["observer"], 3)
    return out


# ---------- a persistent psql session (polling must not cost a process start each time) ----------

class Psql:
    def __init__(self, pg, db):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-h", pg.sock, "-p", str(pg.port),
             "-U", "meterd", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)

    def query(self, sql):
        """Rows as lists of strings; None if the statement failed (e.g. no table yet)."""
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __END__\n")
        self.p.stdin.flush()
        rows, failed = [], False
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql session died")
            line = line.rstrip("\n")
            if line == "__END__":
                break
            if line.startswith(("ERROR:", "psql:", "LINE ", "HINT:", "DETAIL:")) or \
                    line.strip().startswith("^"):
                failed = True
            elif line:
                rows.append(line.split("\t"))
        return None if failed else rows

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()


# ---------- PostgreSQL statement log ----------

STMT_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) (\S+) \[(\d+)\] LOG:  "
                     r"duration: ([0-9.]+) ms  (statement|parse|bind|execute)[^:]*: (.*)")
CLASSES = [("BEGIN", "begin"), ("UPDATE consumer_checkpoints", "checkpoint_update"),
           ("COPY applied_event", "copy_applied_events"), ("COPY cost_staging", "copy_cost_staging"),
           ("INSERT INTO cost_records", "cost_records_upsert"),
           ("COPY state_staging", "copy_ledger_state"), ("INSERT INTO ledger_state", "ledger_state_upsert"),
           ("COPY usage_staging", "copy_usage"), ("INSERT INTO usage_records", "usage_upsert"),
           ("COPY runs_staging", "copy_runs"), ("INSERT INTO agent_runs", "runs_upsert"),
           ("COPY accounts_staging", "copy_accounts"), ("INSERT INTO billing_accounts", "accounts_upsert"),
           ("COPY invoices_staging", "copy_invoices"), ("WITH up AS (INSERT INTO invoices", "invoices_merge"),
           ("COPY lines_staging", "copy_lines"), ("INSERT INTO invoice_line_items", "lines_insert"),
           ("COPY rollups_staging", "copy_rollups"), ("INSERT INTO usage_rollups", "rollups_upsert"),
           ("COPY subs_staging", "copy_subs"), ("INSERT INTO subscriptions", "subs_insert"),
           ("COMMIT", "commit")]


def statement_times(logpath, offset, pids, since):
    """Sums the logged statement durations (ms) of one backend by flush step, and measures each
    flush transaction from the start of its BEGIN to the end of its COMMIT (log_line_prefix
    '%m [%p] ' stamps a statement's end, to the millisecond)."""
    sums, counts, flushes = {}, {}, []
    begin = {}
    with open(logpath, "rb") as f:
        f.seek(offset)
        for raw in f:
            m = STMT_RE.search(raw.decode(errors="replace"))
            pid = int(m.group(3)) if m else None
            if pid not in pids:
                continue
            end = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
            if m.group(2) in ("UTC", "GMT"):
                end = end.replace(tzinfo=datetime.timezone.utc)
            end = end.timestamp()
            if end < since:
                continue  # start-up: migrations, claims
            ms = float(m.group(4))
            sql = m.group(6).strip()
            cls = "other"
            for prefix, name in CLASSES:
                if sql.startswith(prefix):
                    cls = name
                    break
            sums[cls] = sums.get(cls, 0.0) + ms
            if m.group(5) in ("statement", "execute"):
                counts[cls] = counts.get(cls, 0) + 1
            if cls == "begin":
                begin[pid] = end - ms / 1000
            elif cls == "commit" and begin.get(pid) is not None:
                flushes.append(round((end - begin[pid]) * 1000, 1))
                begin[pid] = None
    steps = {k: {"ms": round(v, 1), "count": counts.get(k, 0)} for k, v in sorted(sums.items())}
    return steps, flushes


def wait_quiet(what):
    """Waits (at most --quiet-wait seconds) until the rest of the machine is nearly idle, so
    that a measurement does not share the two cores with someone else's build. Returns what it
    saw, which goes into the results either way."""
    t0 = time.time()
    while True:
        b0 = machine_busy()
        time.sleep(2)
        busy = (machine_busy() - b0) / 2
        waited = time.time() - t0
        if busy < ARGS.quiet_threshold or waited >= ARGS.quiet_wait:
            if busy >= ARGS.quiet_threshold:
                log("%s: the machine is still busy (%.2f cores) after %.0f s; measuring anyway" %
                    (what, busy, waited))
            return {"waited_seconds": round(waited, 1), "busy_cores_before": round(busy, 2)}


# ---------- the end-to-end run ----------

class BenchDaemon(meterlab.Daemon):
    """meterd with its defaults, apart from what the mock broker and the bench need."""

    def argv(self):
        return [os.path.join(meterlab.BUILD, "meterd"),
                "--kafka.brokers=" + self.brokers,
                "--kafka.group_id=" + self.group,
                "--kafka.fetch_wait_max_ms=10",
                "--postgres.dsn=" + self.dsn,
                "--meter.prices_file=" + meterlab.PRICES,
                "--meter.tiers_file=" + meterlab.TIERS,
                "--meter.instance_id=" + self.name,
                "--meter.stats_interval_ms=1000",
                "--http.listen=127.0.0.1:%d" % self.http_port,
                "--http.admin_listen=127.0.0.1:%d" % self.admin_port] + self.extra


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class LogTail:
    """Reads a daemon's JSON log incrementally."""

    def __init__(self, path):
        self.path, self.pos = path, 0

    def records(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return []
        nl = chunk.rfind(b"\n")
        if nl < 0:
            return []
        self.pos += nl + 1
        out = []
        for line in chunk[:nl].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def e2e_run(lab, name, ends, events, perf_out=None):
    pg = lab.pg
    db = "bench_" + re.sub(r"[^a-z0-9_]", "_", name)
    pg.psql("DROP DATABASE IF EXISTS %s" % db, db="postgres")
    dsn = pg.createdb(db)
    # Every statement of meterd's sessions is logged with its duration: a handful per flush.
    pg.psql("ALTER DATABASE %s SET log_min_duration_statement = 0" % db, db="postgres")
    if ARGS.setup_sql:
        r = subprocess.run([os.path.join(meterlab.BUILD, "meterd"), "--postgres.dsn=" + dsn,
                            "--meter.prices_file=" + meterlab.PRICES,
                "--meter.tiers_file=" + meterlab.TIERS, "migrate"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError("meterd migrate failed: " + r.stdout.decode(errors="replace"))
        pg.psql(ARGS.setup_sql, db=db)
    pglog = os.path.join(pg.dir, "postgres.log")
    pglog_offset = os.path.getsize(pglog)
    quiet = wait_quiet("e2e " + name)
    daemons = []
    for k in range(ARGS.instances):
        d = BenchDaemon("%s-%d" % (name, k + 1), lab.broker.bootstrap, dsn, lab.dir,
                        group="bench-" + name, extra=ARGS.daemon_arg)
        lab.daemons.append(d)
        daemons.append(d)
    for d in daemons:
        d.start()
    tails = [LogTail(d.logpath) for d in daemons]
    nparts = len(ends)
    target = sum(ends.values())

    def check_alive(when):
        for d in daemons:
            if not d.running():
                raise RuntimeError("%s exited %s:\n%s" % (d.name, when, d.tail(30)))

    # Wait until every partition is ready (claimed in PostgreSQL, assigned from offset 0) in
    # some instance. The clock starts at the first "partition ready" line.
    ready, t_ready, revoked = set(), None, 0
    deadline = time.time() + 120
    while len(ready) < nparts:
        check_alive("during start-up")
        if time.time() > deadline:
            raise RuntimeError("partitions not ready after 120 s:\n" + daemons[0].tail(30))
        for t in tails:
            for rec in t.records():
                if rec.get("msg") == "partitions revoked":
                    revoked += 1
                if rec.get("msg") != "partition ready":
                    continue
                if rec.get("offset", 0) not in (0, -1):
                    raise RuntimeError("partition %s starts at %s, not 0" %
                                       (rec.get("partition"), rec.get("offset")))
                ready.add(rec["partition"])
                ts = parse_ts(rec["ts"])
                t_ready = ts if t_ready is None else min(t_ready, ts)
        time.sleep(0.005)
    t_seen_ready = time.time()

    sess = Psql(pg, db)
    backends = [int(r[0]) for r in sess.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'meterd'"
        " AND datname = current_database()") or []]
    observer = [os.getpid(), sess.p.pid]
    perf = None
    if perf_out:
        perf = subprocess.Popen(["perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", "999",
                                 "-o", perf_out, "--", "sleep", "3600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pids = [d.proc.pid for d in daemons]
    snap0 = CpuSnapshot(pg, pids, lab.broker.proc.pid, observer, backends)

    # Poll the checkpoints until every partition reached its end offset.
    timeline = []
    deadline = time.time() + ARGS.timeout
    q = ("SELECT partition, coalesce(next_offset, 0) FROM consumer_checkpoints"
         " WHERE topic = 'usage.events'")
    while True:
        rows = sess.query(q) or []
        now = time.time()
        got = {int(p): int(o) for p, o in rows}
        done = sum(min(got.get(p, 0), e) for p, e in ends.items())
        if not timeline or timeline[-1][1] != done:
            timeline.append((round(now - t_ready, 4), done))
        if all(got.get(p, 0) >= e for p, e in ends.items()):
            t_done = now
            break
        check_alive("during the run")
        if now > deadline:
            raise RuntimeError("not caught up after %ss: %d of %d" % (ARGS.timeout, done, target))
        time.sleep(0.02)
    snap1 = CpuSnapshot(pg, pids, lab.broker.proc.pid, observer, backends)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait(60)
    cpu = cpu_delta(snap0, snap1)
    for t in tails:
        revoked += sum(1 for r in t.records() if r.get("msg") == "partitions revoked")

    # Nothing lost, nothing doubled.
    over = {p: o for p, o in got.items() if o != ends.get(p)}
    calls = int(sess.query("SELECT coalesce(sum(calls), 0) FROM cost_records")[0][0])
    # The identities of applied events: one row per event (applied_events, schema up to
    # abc9ea9) or one row per flush and partition holding n hashes (applied_event_ids).
    if sess.query("SELECT to_regclass('applied_event_ids') IS NOT NULL")[0][0] == "t":
        applied_rows = int(sess.query("SELECT coalesce(sum(n), 0) FROM applied_event_ids")[0][0])
    else:
        applied_rows = int(sess.query("SELECT count(*) FROM applied_events")[0][0])
    cost_rows = int(sess.query("SELECT count(*) FROM cost_records")[0][0])
    sess.close()
    rcs = [d.stop(60) for d in daemons]
    lasts = []
    for d in daemons:
        stats = [r for r in d.log_lines() if r.get("msg") == "stats"]
        lasts.append(stats[-1] if stats else {})

    def total(key):
        return sum(int(x.get(key) or 0) for x in lasts)

    problems = []
    if over:
        problems.append("checkpoints beyond the end offsets: %s" % over)
    if calls != events:
        problems.append("sum(calls) = %d, want %d" % (calls, events))
    if applied_rows != events:
        problems.append("identities recorded = %d, want %d" % (applied_rows, events))
    if total("duplicates") or total("dead_lettered"):
        problems.append("duplicates %d, dead letters %d" % (total("duplicates"),
                                                            total("dead_lettered")))
    if total("applied") != events:
        problems.append("meterd applied %d, want %d" % (total("applied"), events))
    if any(rc != 0 for rc in rcs):
        problems.append("meterd exit statuses after SIGTERM: %s" % rcs)
    if problems:
        raise RuntimeError("end-to-end run %s is invalid: %s\n%s" % (
            name, "; ".join(problems), daemons[0].tail(20)))

    seconds = t_done - t_ready

    # Steady state: the slope between 10% and 90% of the events durable.
    def at(frac):
        for t, n in timeline:
            if n >= frac * target:
                return t, n
        return timeline[-1]
    (t10, n10), (t90, n90) = at(0.1), at(0.9)
    stmts, flush_ms = statement_times(pglog, pglog_offset, backends, t_ready)
    nflush = total("flushes")
    pg_busy_ms = sum(v["ms"] for k, v in stmts.items() if k != "other")
    result = {
        "name": name,
        "instances": len(daemons),
        "events": events,
        "seconds": round(seconds, 3),
        "rate": round(events / seconds, 1),
        "steady_rate_10_90": round((n90 - n10) / (t90 - t10), 1) if t90 > t10 else None,
        "first_durable_seconds": timeline[1][0] if len(timeline) > 1 else None,
        "ready_detect_lag_seconds": round(t_seen_ready - t_ready, 3),
        "revocations": revoked,
        "flushes": nflush,
        "events_per_flush": round(events / nflush, 1) if nflush else None,
        "flush_statements_ms": stmts,
        "flush_transaction_ms": flush_ms,
        "quiet": quiet,
        "pg_statement_busy_share": round(pg_busy_ms / 1000 / seconds / len(daemons), 3),
        "cost_records_rows": cost_rows,
        "identities_recorded": applied_rows,
        "cpu": cpu,
        "daemon_stats": lasts,
        "daemon_pids": pids,
        "backend_pids": backends,
        "timeline": timeline,
    }
    log("e2e %s: %d events in %.3f s = %.0f events/s (%d flushes)" %
        (name, events, seconds, events / seconds, nflush))
    for d in daemons:
        lab.daemons.remove(d)
    pg.psql("DROP DATABASE %s" % db, db="postgres")
    return result


# ---------- perf report ----------

PG_FUNCS = ["CopyFrom", "AfterTriggerEndQuery", "RI_FKey_check", "ExecInsertIndexTuples",
            "ExecCheckIndexConstraints", "_bt_doinsert", "heap_insert", "heap_multi_insert",
            "heap_update", "XLogInsert", "XLogFlush", "pg_plan_queries", "CommitTransaction"]


def perf_samples(path, selector, limit=25):
    """Self time by leaf symbol, and by (leaf, nearest named caller), from `perf script` for
    one selection ("--tid", "932" or "--pid", "940,941"). perf script is used rather than perf
    report because this perf's report drops some samples of a --tid selection; the caller view
    shows who calls libc's memmove when the caller (libpq) has no frame pointers."""
    txt = cmd_out(["perf", "script", "-i", path] + list(selector) + ["-F", "ip,sym,dso"])
    leaf, pair, total = {}, {}, 0
    for sample in re.split(r"\n\s*\n", txt):
        frames = []
        for ln in sample.strip().splitlines():
            parts = ln.strip().split(None, 1)
            if len(parts) == 2:
                sym, _, dso = parts[1].rpartition(" (")
                frames.append((sym or "?", os.path.basename(dso.rstrip(")"))))
        if not frames:
            continue
        total += 1
        name = "%s (%s)" % frames[0]
        leaf[name] = leaf.get(name, 0) + 1
        caller = next((f[0] for f in frames[1:] if f[0] not in ("[unknown]", "?")), "?")
        key = "%s <- %s" % (frames[0][0], caller)
        pair[key] = pair.get(key, 0) + 1

    def top(d):
        return [[round(100.0 * n / total, 2), k]
                for k, n in sorted(d.items(), key=lambda kv: -kv[1])[:limit]]
    return (top(leaf), top(pair)) if total else ([], [])


def perf_summary(path, daemon_pids, backend_pids):
    """The profile in a few tables, restricted to this run's processes by pid (the machine may
    run other meterd and postgres processes): CPU share by process over the whole machine; the
    hottest symbols of meterd's main thread, of its librdkafka threads and of its PostgreSQL
    backend (self time, relative to that selection); inclusive time of the PostgreSQL functions
    that tell the flush steps apart; who calls the main thread's hottest leaf functions."""
    def report(*extra):
        return cmd_out(["perf", "report", "-i", path, "--stdio", "-g", "none",
                        "--percent-limit", "0.3"] + list(extra))

    def rows(text, limit):
        out = []
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = re.match(r"\s*([0-9.]+)%\s+(?:[0-9.]+%\s+)?(.*)", line)
            if m:
                out.append([float(m.group(1)), re.sub(r"\s{2,}", "  ", m.group(2).strip())])
            if len(out) >= limit:
                break
        return out

    dpids = ",".join(str(p) for p in daemon_pids)
    bpids = ",".join(str(p) for p in backend_pids)
    children = rows(report("--children", "--pid", bpids, "--percentage", "relative",
                           "--sort", "sym", "--percent-limit", "0"), 100000)
    pg_incl = [[pct, sym.split("] ", 1)[-1]] for pct, sym in children
               if sym.split("] ", 1)[-1] in PG_FUNCS]
    main_self, main_callers = perf_samples(path, ["--tid", str(daemon_pids[0])])
    pg_self, _ = perf_samples(path, ["--pid", bpids])
    return {
        "by_process": rows(report("--no-children", "--sort", "pid"), 20),
        "meterd_main_thread_self": main_self,
        "meterd_main_thread_callers": main_callers,
        "meterd_rdkafka_threads_self": rows(report("--no-children", "--pid", dpids, "--comms",
                                                   "rdk:main,rdk:broker1", "--percentage",
                                                   "relative", "--sort", "dso,sym"), 15),
        "postgres_backend_self": pg_self,
        "postgres_backend_inclusive": pg_incl,
    }


# ---------- main ----------

def fmt_rate(x):
    return "{:,.0f}".format(x) if x is not None else "—"


def main():
    for b in ("prefill", "consume_baseline", "copy_baseline"):
        if not os.access(os.path.join(BENCH_BIN, b), os.X_OK):
            sys.exit("%s/%s is missing: build first (cmake --build %s)" % (BENCH_BIN, b,
                                                                            meterlab.BUILD))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ARGS.out or os.path.join(HERE, "results", "bench-%s.json" % stamp)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    res = {"started": stamp, "label": ARGS.label, "machine": machine(), "settings": {
        "events": ARGS.events, "orgs": ARGS.orgs, "seed": ARGS.seed,
        "partitions": ARGS.partitions, "runs": ARGS.runs, "copy_batch": ARGS.copy_batch,
        "prefill_linger_ms": ARGS.linger_ms, "setup_sql": ARGS.setup_sql,
        "instances": ARGS.instances, "postgres": "fsync=on synchronous_commit=on "
        "full_page_writes=on shared_buffers=256MB max_wal_size=4GB",
        "meterd_flags": BenchDaemon("x", "B", "D", "/tmp").argv()[1:]}}
    log("machine:", json.dumps(res["machine"]))

    lab = meterlab.Lab("bench", partitions=ARGS.partitions, fsync=True)
    with lab:
        pre = run_json([os.path.join(BENCH_BIN, "prefill"), "--brokers", lab.broker.bootstrap,
                        "--topic", "usage.events", "--events", str(ARGS.events),
                        "--orgs", str(ARGS.orgs), "--seed", str(ARGS.seed),
                        "--partitions", str(ARGS.partitions), "--linger-ms", str(ARGS.linger_ms)])
        if not pre["complete"] or pre["per_partition_counts"] != pre["per_partition_end_offsets"]:
            raise RuntimeError("the topic does not hold exactly the pre-filled events: %s" % pre)
        ends = {p: e for p, e in enumerate(pre["per_partition_end_offsets"])}
        res["prefill"] = {k: pre[k] for k in ("events", "bytes", "seconds", "rate", "partitions")}
        res["prefill"]["mean_event_bytes"] = round(pre["bytes"] / pre["events"], 1)
        res["prefill"]["max_partition_events"] = max(pre["per_partition_counts"])
        log("prefill: %d events (%.0f bytes each) in %.2f s" %
            (pre["events"], pre["bytes"] / pre["events"], pre["seconds"]))

        if not ARGS.no_baselines:
            cons = []
            res["baseline_quiet"] = wait_quiet("baselines")
            for i in range(ARGS.runs):
                cons.append(run_json([os.path.join(BENCH_BIN, "consume_baseline"), "--brokers",
                                      lab.broker.bootstrap, "--messages", str(ARGS.events)]))
                log("consume baseline: %.0f msgs/s" % cons[-1]["rate"])
            # The same with msgpack decoding, once with meterd's queue settings and once with
            # a deep local queue: librdkafka 2.0.2 stops fetching for 1 s whenever the consumer
            # queue holds queued.min.messages (100,000, counted over all partitions).
            dec = run_json([os.path.join(BENCH_BIN, "consume_baseline"), "--brokers",
                            lab.broker.bootstrap, "--messages", str(ARGS.events), "--decode"])
            log("consume + msgpack_unpack: %.0f msgs/s" % dec["rate"])
            deep = run_json([os.path.join(BENCH_BIN, "consume_baseline"), "--brokers",
                             lab.broker.bootstrap, "--messages", str(ARGS.events), "--decode"] +
                            DEEP_QUEUE)
            log("consume + msgpack_unpack, deep queue: %.0f msgs/s" % deep["rate"])
            res["consume_baseline"] = {"runs": cons, "median_rate": median([c["rate"] for c in cons]),
                                       "decode": dec, "decode_deep_queue": deep}

            copies = []
            res["copy_quiet"] = wait_quiet("COPY baseline")
            cdsn = lab.pg.createdb("bench_copy")
            for i in range(ARGS.runs):
                copies.append(run_json([os.path.join(BENCH_BIN, "copy_baseline"), "--dsn", cdsn,
                                        "--rows", str(ARGS.events), "--batch", str(ARGS.copy_batch),
                                        "--partitions", str(ARGS.partitions),
                                        "--seed", str(ARGS.seed + i),
                                        "--variants", ARGS.copy_variants]))
                log("COPY baseline: " + ", ".join("%s %.0f rows/s" % (v["name"], v["rate"])
                                                  for v in copies[-1]["variants"]))
            lab.pg.psql("DROP DATABASE bench_copy", db="postgres")
            by_variant = {}
            for c in copies:
                for v in c["variants"]:
                    by_variant.setdefault(v["name"], []).append(v["rate"])
            res["copy_baseline"] = {"runs": copies, "median_rate": {k: median(v) for k, v in
                                                                    by_variant.items()}}

        runs = []
        for i in range(ARGS.runs):
            runs.append(e2e_run(lab, "run%d" % (i + 1), ends, ARGS.events))
        res["e2e"] = {"runs": runs, "median_rate": median([r["rate"] for r in runs]),
                      "median_steady_rate": median([r["steady_rate_10_90"] for r in runs
                                                    if r["steady_rate_10_90"]])}
        if ARGS.profile:
            perf_path = os.path.join(os.path.dirname(out), "perf-%s.data" % stamp)
            prof = e2e_run(lab, "profile", ends, ARGS.events, perf_out=perf_path)
            prof["perf_data"] = perf_path
            prof["perf"] = perf_summary(perf_path, prof["daemon_pids"], prof["backend_pids"])
            res["e2e"]["profile_run"] = prof
    res["machine"]["loadavg_after"] = read_text("/proc/loadavg").split()[:3]

    e2e = res["e2e"]["median_rate"]
    ratios = {}
    if "consume_baseline" in res:
        ratios["e2e_over_consume"] = round(e2e / res["consume_baseline"]["median_rate"], 4)
        ratios["e2e_over_consume_decode"] = round(e2e / res["consume_baseline"]["decode"]["rate"], 4)
        ratios["e2e_over_consume_decode_deep_queue"] = round(
            e2e / res["consume_baseline"]["decode_deep_queue"]["rate"], 4)
        for k, v in res["copy_baseline"]["median_rate"].items():
            ratios["e2e_over_copy_" + k] = round(e2e / v, 4)
    res["ratios"] = ratios
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print_table(res)
    log("results written to", out)


def print_table(res):
    e = res["e2e"]
    print()
    print("| measurement | rate | ratio of meterd end to end to it |")
    print("|---|---:|---:|")
    print("| **meterd end to end** (pre-filled topic → committed PostgreSQL rows), median of %d "
          "| **%s events/s** | |" % (len(e["runs"]), fmt_rate(e["median_rate"])))
    print("| runs: %s | | |" % ", ".join(fmt_rate(r["rate"]) for r in e["runs"]))
    print("| meterd steady state (10%%→90%% durable), median | %s events/s | |" %
          fmt_rate(e["median_steady_rate"]))
    if "consume_baseline" in res:
        c = res["consume_baseline"]
        r = res["ratios"]
        print("| librdkafka consume only (rd_kafka_consumer_poll), median | %s msgs/s | %.1f%% |" %
              (fmt_rate(c["median_rate"]), 100 * r["e2e_over_consume"]))
        print("| librdkafka consume + msgpack_unpack | %s msgs/s | %.1f%% |" %
              (fmt_rate(c["decode"]["rate"]), 100 * r["e2e_over_consume_decode"]))
        print("| same, queued.min.messages=10M (no 1 s fetch stall) | %s msgs/s | %.1f%% |" %
              (fmt_rate(c["decode_deep_queue"]["rate"]),
               100 * r["e2e_over_consume_decode_deep_queue"]))
        labels = {"full": "PostgreSQL COPY only, one row per event, primary + foreign key, median",
                  "pk": "PostgreSQL COPY only, one row per event, primary key only, median",
                  "heap": "PostgreSQL COPY only, one row per event, no index, median"}
        for k, v in res["copy_baseline"]["median_rate"].items():
            print("| %s | %s rows/s | %.1f%% |" % (labels.get(k, k), fmt_rate(v),
                                                   100 * r["e2e_over_copy_" + k]))
    print()
    print("| e2e run | seconds | events/s | flushes | events/flush | flush ms p50 / max | "
          "PG statement busy | meterd CPU s | PG backend CPU s | broker CPU s | "
          "rest of machine CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    allruns = e["runs"] + ([e["profile_run"]] if "profile_run" in e else [])
    for r in allruns:
        c = r["cpu"]
        fl = sorted(r["flush_transaction_ms"]) or [0]
        print("| %s | %.2f | %s | %d | %s | %.0f / %.0f | %.0f%% | %.2f | %.2f | %.2f | %.2f |" %
              (r["name"], r["seconds"], fmt_rate(r["rate"]), r["flushes"],
               fmt_rate(r["events_per_flush"]), fl[len(fl) // 2], fl[-1],
               100 * r["pg_statement_busy_share"],
               c["meterd"], c["postgres_backend"], c["mockbroker"], c["rest_of_machine"]))
    print()


if __name__ == "__main__":
    main()
