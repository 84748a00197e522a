#!/usr/bin/python3
# ctest: slow
"""Acceptance (admission): queues survive crashes exactly.

The admission stream of test_admission_exact (>= 100,000 events, 1,000 organizations) is
published live over about two minutes while one instance is killed with SIGKILL at >= 10
random moments (while it owns partitions and consumes; some more during start-up) and
restarted each time: every restart loads the partitions' ledger snapshots and replays the
events after the checkpoint. Then a reference instance reads the same topic uninterrupted into
its own database. The set of decisions deduplicated by id is the same, and usage_records and
agent_runs are identical.

Seed: METERD_TEST_SEED (printed); it drives the stream and the kill schedule.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, LivePublisher, caught_up, kill_loop, log, wait_for  # noqa: E402
from admission import AdmissionStream  # noqa: E402
from admission_check import dedup, diff_maps, fetch_runs, fetch_usage, read_decisions  # noqa: E402

EVENTS = int(os.environ.get("METERD_TEST_EVENTS", "110000"))
KILLS = int(os.environ.get("METERD_TEST_KILLS", "10"))


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d events=%d kills>=%d (replay with METERD_TEST_SEED=%d)" % (seed, EVENTS, KILLS, seed))
    rng = random.Random(seed)
    s = AdmissionStream(seed, EVENTS, 1000)
    with Lab("admcrash", partitions=16) as lab:
        lab.broker.stop()
        lab.broker.topics = ["usage.events:16", "usage.dlq:4", "dec.crash:4", "dec.ref:4"]
        lab.broker.start()
        crash = lab.pg.createdb("crash")
        ref = lab.pg.createdb("ref")
        chunk = 2500
        pub = LivePublisher(lab.broker.bootstrap, s.messages, chunk,
                            120.0 / (len(s.messages) / chunk)).start()
        d = lab.daemon("crash", dsn=crash, group="crash",
                       extra=["--kafka.decisions_topic=dec.crash"])
        consuming, starting = kill_loop(d, rng, pub.done, KILLS)
        pub.join()
        ends = pub.ends
        d.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="crash"), 240, "the crashed run to catch up")
        assert d.stop() == 0
        log("crashed run caught up after %d kills (%d consuming, %d starting)" %
            (consuming + starting, consuming, starting))

        r = lab.daemon("ref", dsn=ref, group="ref", extra=["--kafka.decisions_topic=dec.ref"])
        r.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="ref"), 240, "the reference run")
        assert r.stop() == 0

        raw = read_decisions(lab.broker.bootstrap, "dec.crash")
        got, want = dedup(raw), dedup(read_decisions(lab.broker.bootstrap, "dec.ref"))
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        assert not missing and not extra, "decision sets differ: missing %r, extra %r" % (
            [want[i] for i in missing], [got[i] for i in extra])
        assert got == want
        log("decisions: %d published in the crashed run, %d distinct = the reference's %d" %
            (len(raw), len(got), len(want)))
        diffs = (diff_maps(fetch_usage(lab.pg, "ref"), fetch_usage(lab.pg, "crash"), "usage") +
                 diff_maps(fetch_runs(lab.pg, "ref"), fetch_runs(lab.pg, "crash"), "run"))
        assert not diffs, "\n".join(diffs)
        log("usage_records and agent_runs identical")
    log("PASS")


if __name__ == "__main__":
    main()
