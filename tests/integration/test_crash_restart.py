#!/usr/bin/python3
# ctest: slow
"""Acceptance: exactly once across crashes.

The stream of test_ingest_exact (>= 100,000 llm.call events, 5% repeated ids, 1% poison) is
published live, at a pace that spreads it over about two minutes, while one daemon is killed with
SIGKILL at random moments (>= 10 of them while it owns its partitions and is consuming, plus some
during start-up) and restarted each time. Afterwards a reference daemon, in its own database and
consumer group, reads the same topic without interruption. Then:

  - cost_records, the applied event identities and the checkpoints of the two databases are
    identical (flush boundaries differ, so identities are compared as sets per partition);
  - both equal the independent computation;
  - the dead letters of the crashed run, deduplicated by (source partition, offset) — they are
    at-least-once across a crash, identified by those headers — are exactly the poison messages.

Seed: METERD_TEST_SEED (printed); it drives the stream and the kill schedule.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import (Lab, LivePublisher, caught_up, kill_loop, log, read_topic,  # noqa: E402
                      wait_for)
from stream import Stream, compare_rows, fetch_rows  # noqa: E402

EVENTS = int(os.environ.get("METERD_TEST_EVENTS", "108000"))
KILLS = int(os.environ.get("METERD_TEST_KILLS", "10"))
PUBLISH_SECONDS = 120


def dump(pg, db):
    """Everything the ingest path wrote, in a comparable form."""
    return {
        "cost": fetch_rows(pg, db),
        "applied": sorted(tuple(r) for r in pg.psql(
            "SELECT c.partition, encode(substr(a.ids, 16 * i + 1, 16), 'hex')"
            " FROM applied_event_ids a JOIN consumer_checkpoints c ON c.id = a.checkpoint_id,"
            " generate_series(0, a.n - 1) AS i", db)),
        "checkpoints": sorted(tuple(r) for r in pg.psql(
            "SELECT partition, next_offset FROM consumer_checkpoints", db)),
    }


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d events=%d kills>=%d (replay with METERD_TEST_SEED=%d)" % (seed, EVENTS, KILLS, seed))
    rng = random.Random(seed)
    s = Stream(seed=seed, events=EVENTS, orgs=120)

    with Lab("crash", partitions=16) as lab:
        lab.broker.stop()
        lab.broker.topics = ["usage.events:16", "dlq.crash:4", "dlq.ref:4"]
        lab.broker.start()
        crash_dsn = lab.pg.createdb("crash")
        ref_dsn = lab.pg.createdb("ref")

        chunk = 2000
        pub = LivePublisher(lab.broker.bootstrap, s.messages, chunk,
                            PUBLISH_SECONDS / (len(s.messages) / chunk)).start()

        d = lab.daemon("crash", dsn=crash_dsn, group="crash",
                       extra=["--kafka.dlq_topic=dlq.crash"])
        kills_consuming, kills_starting = kill_loop(d, rng, pub.done, KILLS)
        pub.join()
        # the end offsets of the topic, from an independent client
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=lab.broker.bootstrap, api_version=(2, 5, 0))
        tps = [TopicPartition("usage.events", p) for p in range(16)]
        ends = {tp.partition: o for tp, o in c.end_offsets(tps).items() if o > 0}
        c.close()
        assert sum(ends.values()) == len(s.messages)

        d.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="crash"), 180, "the crashed run to catch up")
        assert d.stop() == 0
        log("crashed run caught up after %d kills (%d consuming, %d starting)" %
            (kills_consuming + kills_starting, kills_consuming, kills_starting))

        ref = lab.daemon("ref", dsn=ref_dsn, group="ref", extra=["--kafka.dlq_topic=dlq.ref"])
        ref.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="ref"), 180, "the reference run")
        assert ref.stop() == 0

        a, b = dump(lab.pg, "ref"), dump(lab.pg, "crash")
        for k in a:
            assert a[k] == b[k], "%s differ between the reference and the crashed run: %s" % (
                k, compare_rows(dict(enumerate(a[k])) if k != "cost" else a[k],
                                dict(enumerate(b[k])) if k != "cost" else b[k]))
        log("PostgreSQL identical: %d cost rows, %d applied ids, %d checkpoints" %
            (len(a["cost"]), len(a["applied"]), len(a["checkpoints"])))
        diffs = compare_rows(s.expected_rows, b["cost"])
        assert not diffs, "\n".join(diffs)

        dlq = read_topic(lab.broker.bootstrap, "dlq.crash")
        by_source = {}
        for r in dlq:
            h = {k: v.decode() for k, v in r.headers}
            by_source.setdefault((h["source_partition"], h["source_offset"]), set()).add(r.value)
        assert all(len(v) == 1 for v in by_source.values()), "one source, several payloads"
        assert sorted(next(iter(v)) for v in by_source.values()) == sorted(v for v, _ in s.poison)
        log("dead letters: %d messages, %d distinct sources = the %d poison messages" %
            (len(dlq), len(by_source), len(s.poison)))
    log("PASS")


if __name__ == "__main__":
    main()
