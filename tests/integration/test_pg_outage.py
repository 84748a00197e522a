#!/usr/bin/python3
"""PostgreSQL goes away mid-stream and comes back: nothing is lost, nothing doubled, no restart.

The stream is published live. PostgreSQL is stopped (immediate mode: connections die, a crash
recovery follows) while the daemon consumes; the daemon keeps retrying with back-off, pauses
consumption once meter.max_pending_events messages are not durable (backpressure, memory
bounded), and when PostgreSQL returns it reconnects, finishes the flush it was in — reading the
checkpoints back if the connection died after COMMIT — and catches up. The same process then
stops cleanly. cost_records equal the independent computation.

Seed: METERD_TEST_SEED (printed).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, LivePublisher, caught_up, log, wait_for  # noqa: E402
from stream import Stream, compare_rows, fetch_rows  # noqa: E402


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d (replay with METERD_TEST_SEED=%d)" % (seed, seed))
    s = Stream(seed=seed, events=40000, orgs=50)
    with Lab("pgdown", partitions=8) as lab:
        d = lab.daemon("a", extra=["--meter.max_pending_events=8000",
                                   "--meter.flush_max_events=2000",
                                   "--postgres.reconnect_max_ms=1000",
                                   "--meter.stats_interval_ms=500"]).start()
        wait_for(lambda: d.stats().get("partitions") == 8, 60, "the daemon to own the partitions")
        pub = LivePublisher(lab.broker.bootstrap, s.messages, 2000, 0.5).start()
        ends = pub.ends
        wait_for(lambda: d.stats().get("applied", 0) > 5000, 60, "events to flow")
        log("stopping PostgreSQL (immediate) mid-stream")
        lab.pg.stop(mode="immediate")
        wait_for(lambda: any(x.get("msg") == "backpressure: consumption paused"
                             for x in d.log_lines()), 60, "backpressure to pause consumption")
        paused_at = d.stats()["uncommitted"]
        time.sleep(3)
        held = d.stats()["uncommitted"]
        log("paused with %d uncommitted messages (%d three seconds later)" % (paused_at, held))
        assert held <= 8000 + 2000 * 8, "memory not bounded: %d uncommitted" % held
        assert d.running()
        log("starting PostgreSQL again")
        lab.pg.start()
        pub.join()
        wait_for(lambda: caught_up(lab.pg, ends), 120, "the daemon to catch up")
        lines = d.log_lines()
        assert any(x.get("msg") == "backpressure: resumed" for x in lines)
        errors = [x for x in lines if x.get("msg") == "postgres error"]
        assert errors, "no PostgreSQL error was seen: the outage did not happen"
        assert d.starts == 1 and d.running()
        assert d.stop() == 0
        diffs = compare_rows(s.expected_rows, fetch_rows(lab.pg))
        assert not diffs, "\n".join(diffs)
        log("%d PostgreSQL errors, no restart, totals exact" % len(errors))
    log("PASS")


if __name__ == "__main__":
    main()
