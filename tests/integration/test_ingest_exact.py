#!/usr/bin/python3
"""Acceptance: ingest is exact.

python3-kafka publishes >= 100,000 llm.call events over 16 partitions for 120 organizations,
with 5% repeated ids (a fifth of them with different content: the first one counts) and 1%
poison messages (truncated msgpack, wrong types, missing fields, oversize strings, absurd
container counts, deep nesting, invalid UTF-8, unknown type, bad version, key != org, random
bytes). The real daemon consumes them into a real PostgreSQL. Then:

  - cost_records equal, row by row and to the unit, an independent computation (Decimal
    arithmetic over the shipped price table, in tests/lib/stream.py);
  - per-organization cost sums equal the independent ones (queried with psql);
  - the dead-letter topic holds exactly the poison messages — same bytes, same count — each
    with headers naming an acceptable error and its source partition and offset;
  - every distinct event id is recorded once in applied_event_ids;
  - the daemon stops cleanly on SIGTERM (exit 0).

Seed: METERD_TEST_SEED (printed).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, caught_up, log, producer, publish, read_topic, wait_for  # noqa: E402
from stream import Stream, compare_rows, fetch_rows  # noqa: E402

EVENTS = int(os.environ.get("METERD_TEST_EVENTS", "110000"))


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d events=%d (replay with METERD_TEST_SEED=%d)" % (seed, EVENTS, seed))
    s = Stream(seed=seed, events=EVENTS, orgs=120, other_pct=1.0)
    llm = sum(r[0] for r in s.expected_rows.values())
    applied = len(s.applied_ids)
    log("stream: %d messages, %d llm.call applied, %d other types, %d repeated ids, %d poison" %
        (len(s.messages), llm, applied - llm, s.duplicates, len(s.poison)))
    assert llm >= 100000 and len(s.poison) >= EVENTS // 100 * 0.8

    with Lab("ingest", partitions=16) as lab:
        t = time.time()
        ends = publish(producer(lab.broker.bootstrap), "usage.events", s.messages)
        log("published in %.1fs over %d partitions" % (time.time() - t, len(ends)))
        assert len(ends) >= 8

        d = lab.daemon("a").start()
        t = time.time()
        wait_for(lambda: caught_up(lab.pg, ends), 180, "the daemon to reach the end offsets")
        log("caught up in %.1fs" % (time.time() - t))

        got = fetch_rows(lab.pg)
        diffs = compare_rows(s.expected_rows, got)
        assert not diffs, "cost_records differ from the independent computation:\n" + \
            "\n".join(diffs)
        log("cost_records: %d rows equal the independent computation" % len(got))

        by_org = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in lab.pg.psql(
            "SELECT org_id, sum(cost_nanos), sum(calls), sum(unpriced_calls)"
            " FROM cost_records GROUP BY org_id")}
        want = {o: tuple(v) for o, v in s.expected_by_org().items()}
        assert by_org == want, "per-organization sums differ"
        log("per-organization sums equal for %d organizations" % len(want))

        n_applied = int(lab.pg.scalar("SELECT sum(n) FROM applied_event_ids"))
        distinct = int(lab.pg.scalar(
            "SELECT count(DISTINCT substr(ids, 16 * i + 1, 16)) FROM applied_event_ids,"
            " generate_series(0, n - 1) AS i"))
        assert distinct == n_applied, (distinct, n_applied)
        assert n_applied == len(s.applied_ids), (n_applied, len(s.applied_ids))

        dlq = read_topic(lab.broker.bootstrap, "usage.dlq")
        assert len(dlq) == len(s.poison), "dead letters: %d, poison: %d" % (len(dlq), len(s.poison))
        want_values = sorted(v for v, _ in s.poison)
        assert sorted(r.value for r in dlq) == want_values, "dead-letter payloads differ"
        names = {}
        for v, acceptable in s.poison:
            names.setdefault(v, []).append(acceptable)
        seen_sources = set()
        for r in dlq:
            h = {k: v.decode() for k, v in r.headers}
            for k in ("error", "error_field", "error_detail", "source_topic", "source_partition",
                      "source_offset"):
                assert k in h, "dead letter lacks header %s: %r" % (k, h)
            assert h["source_topic"] == "usage.events"
            src = (int(h["source_partition"]), int(h["source_offset"]))
            assert src not in seen_sources, "dead letter repeated for %r" % (src,)
            seen_sources.add(src)
            assert 0 <= src[1] < ends[src[0]]
            ok = any(a is None or h["error"] in a for a in names[r.value])
            assert ok, "dead letter error %r not acceptable for %r" % (h["error"], r.value[:40])
        log("dead-letter topic holds exactly the %d poison messages" % len(dlq))

        rc = d.stop()
        assert rc == 0, "daemon exit status %r" % rc
        by_type = {}
        for x in d.log_lines():
            if x.get("msg") == "applied by type":
                by_type = x
        for t, n in s.other_counts.items():
            assert by_type.get(t) == n, "%s: counted %r, published %d" % (t, by_type.get(t), n)
        assert by_type.get("llm.call") == llm, by_type
        stats = d.stats()
        assert stats["applied"] == applied, stats
        assert stats["duplicates"] == s.duplicates, stats
        assert stats["dead_lettered"] == len(s.poison), stats
    log("PASS")


if __name__ == "__main__":
    main()
