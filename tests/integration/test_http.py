#!/usr/bin/python3
"""Acceptance (operate it): /metrics counts what flowed, promtool accepts it, /readyz follows
PostgreSQL, the admin endpoint shows an organization — all from the loop, no extra thread.

1. A known stream (llm.call and every other type, repeated ids, poison) is published; once it is
   durable, /metrics is scraped over HTTP while the daemon runs: meterd_events_total by type,
   meterd_events_duplicate_total, meterd_dead_letters_total (all reasons) and
   meterd_decisions_total by type equal the counts computed here from the stream and read back
   from the decisions topic; `promtool check metrics` (Debian's prometheus package) passes on
   the scrape; meterd_build_info is present.
2. /livez is 200; /readyz is 200 once ready. PostgreSQL is stopped: /readyz turns 503 (naming
   PostgreSQL) while /livez stays 200; events published meanwhile wait; PostgreSQL starts
   again: /readyz is 200 again without a restart, and the totals are exact (cost_records equal
   the independent computation, nothing lost or doubled).
3. /admin/orgs/ORG on the admin listener returns the organization's live state as JSON; an
   unknown one is 404; the admin routes are not on the public listener and vice versa; a POST
   is 405.
4. An http.listen address already in use: meterd refuses to start, exit status 2, naming the
   key.

Seed: METERD_TEST_SEED (printed).
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, caught_up, log, producer, publish, read_topic, wait_for  # noqa: E402
from stream import Stream, compare_rows, fetch_rows  # noqa: E402


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type")
    except urllib.error.URLError as e:  # not listening (yet)
        return 0, str(e.reason), None


def parse_metrics(text):
    """{(name, frozenset(labels)): value} of the samples (not # lines)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = frozenset()
        name = name_labels
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            labels = frozenset(tuple(kv.split("=", 1)) for kv in
                               rest.rstrip("}").replace('"', "").split(",") if kv)
        out[(name, labels)] = float(value)
    return out


def total(samples, name, **want):
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, str(x)) in labels for k, x in want.items()))


def expected_counts(s):
    """Applied per type and duplicates, from the stream itself (poison excluded)."""
    poison = set(v for v, _ in s.poison)
    seen, by_type, dups = set(), {}, 0
    for _, value in s.messages:
        if value in poison:
            continue
        ev = msgpack.unpackb(value, raw=False)
        key = (ev["org"], ev["id"])
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        by_type[ev["type"]] = by_type.get(ev["type"], 0) + 1
    return by_type, dups


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d (replay with METERD_TEST_SEED=%d)" % (seed, seed))
    s = Stream(seed=seed, events=12000, orgs=40, other_pct=8.0)
    by_type, dups = expected_counts(s)
    with Lab("http", partitions=4) as lab:
        d = lab.daemon("a", extra=["--postgres.reconnect_max_ms=500"]).start()
        wait_for(lambda: get(d.url("/readyz"))[0] == 200, 60, "/readyz to say ready")
        code, body, _ = get(d.url("/livez"))
        assert code == 200 and body == "ok\n", (code, body)
        ends = publish(producer(lab.broker.bootstrap), "usage.events", s.messages)
        wait_for(lambda: caught_up(lab.pg, ends), 120, "the stream to be durable")

        # ---- 1: the scrape equals the stream
        code, text, ctype = get(d.url("/metrics"))
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), (code, ctype)
        m = parse_metrics(text)
        problems = []
        for t, n in sorted(by_type.items()):
            got = total(m, "meterd_events_total", type=t)
            if got != n:
                problems.append("meterd_events_total{type=%s} = %d, the stream has %d" % (t, got, n))
        if total(m, "meterd_events_total") != sum(by_type.values()):
            problems.append("events total %d != %d" % (total(m, "meterd_events_total"),
                                                       sum(by_type.values())))
        if total(m, "meterd_events_duplicate_total") != dups:
            problems.append("duplicates %d != %d" % (total(m, "meterd_events_duplicate_total"),
                                                     dups))
        dlq = read_topic(lab.broker.bootstrap, "usage.dlq")
        if total(m, "meterd_dead_letters_total") != len(s.poison) or len(dlq) != len(s.poison):
            problems.append("dead letters: metric %d, topic %d, poison %d" % (
                total(m, "meterd_dead_letters_total"), len(dlq), len(s.poison)))
        decisions = {}
        for rec in read_topic(lab.broker.bootstrap, "meter.decisions"):
            t = msgpack.unpackb(rec.value, raw=False)["type"]
            decisions[t] = decisions.get(t, 0) + 1
        for t, n in decisions.items():
            if total(m, "meterd_decisions_total", type=t) != n:
                problems.append("meterd_decisions_total{type=%s} = %d, topic has %d" % (
                    t, total(m, "meterd_decisions_total", type=t), n))
        for name in ("meterd_build_info", "meterd_consumer_lag_messages", "meterd_pg_up",
                     "meterd_flush_duration_seconds_count", "meterd_partitions_owned"):
            if not any(n == name for n, _ in m):
                problems.append("no %s" % name)
        if total(m, "meterd_pg_up") != 1 or total(m, "meterd_partitions_owned") != 4:
            problems.append("pg_up %d, partitions owned %d" % (total(m, "meterd_pg_up"),
                                                               total(m, "meterd_partitions_owned")))
        assert not problems, "\n".join(problems)
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert r.returncode == 0, "promtool check metrics:\n" + r.stdout.decode()
        log("scrape: %d samples equal the stream (%d events of %d types, %d duplicates, %d dead"
            " letters, %d decisions); promtool check metrics passes" % (
                len(m), sum(by_type.values()), len(by_type), dups, len(s.poison),
                sum(decisions.values())))

        # ---- 3: admin endpoint
        org = s.orgs[0]
        code, body, ctype = get(d.url("/admin/orgs/" + org, admin=True))
        assert code == 200 and ctype == "application/json", (code, body)
        state = json.loads(body)
        assert state["org"] == org and "tier" in state and "draft_total_cents" in state, state
        assert get(d.url("/admin/orgs/no-such-org", admin=True))[0] == 404
        assert get(d.url("/admin/orgs/" + org))[0] == 404, "admin route on the public listener"
        assert get(d.url("/metrics", admin=True))[0] == 404, "metrics on the admin listener"
        assert get(d.url("/metrics"), method="POST")[0] == 405
        log("admin: %s" % body.strip())

        # ---- 2: readiness follows PostgreSQL, without a restart, nothing lost
        lab.pg.stop()
        wait_for(lambda: get(d.url("/readyz"))[0] == 503, 30, "/readyz to turn 503")
        code, body, _ = get(d.url("/readyz"))
        assert "PostgreSQL" in body, body
        assert get(d.url("/livez"))[0] == 200
        log("PostgreSQL stopped: /readyz %d %r, /livez 200" % (code, body.strip()))
        s2 = Stream(seed=seed + 1, events=3000, orgs=40)
        ends2 = {}
        t = threading.Thread(target=lambda: ends2.update(
            publish(producer(lab.broker.bootstrap), "usage.events", s2.messages)))
        t.start()
        time.sleep(3)
        assert get(d.url("/readyz"))[0] == 503
        lab.pg.start()
        t.join()
        wait_for(lambda: get(d.url("/readyz"))[0] == 200, 60, "/readyz to be 200 again")
        wait_for(lambda: caught_up(lab.pg, ends2), 120, "the events published meanwhile")
        assert d.starts == 1 and d.running(), "the daemon restarted"
        assert d.stop() == 0

        # ---- an address already in use: refused at start, status 2, the key named
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        e = lab.daemon("busy", extra=["--http.listen=127.0.0.1:%d" % port]).start()
        rc = e.proc.wait(60)
        taken.close()
        assert rc == 2, "exit %s with http.listen in use:\n%s" % (rc, e.tail())
        assert "http.listen" in e.tail(), e.tail()
        log("http.listen in use: exit 2, naming the key")
        want = dict(s.expected_rows)
        for k, row in s2.expected_rows.items():
            want[k] = [a + b for a, b in zip(want[k], row)] if k in want else row
        diffs = compare_rows(want, fetch_rows(lab.pg))
        assert not diffs, "\n".join(diffs)
        log("PostgreSQL back: /readyz 200 without a restart, totals exact")
    log("PASS")


if __name__ == "__main__":
    main()
