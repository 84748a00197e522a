#!/usr/bin/python3
# ctest: slow
"""Acceptance (billing): invoices and budget events survive crashes exactly.

The stream of test_billing_month (tests/lib/billing_stream.py: one month for an organization of
each tier, an upgrade, a promotion over four months, credits carried and run out, a budget, a
Free quota, periods closed by an organization's own next event and by another's event an hour
past the end) is published live over about 75 seconds while one instance is killed with SIGKILL
at >= 10 random moments while it owns partitions and consumes (some more land during start-up)
and is restarted each time (it flushes once a second, so each kill loses up to a second of
work): every restart loads the ledger snapshots, bills included, and
replays the events after the checkpoint. Then a reference instance reads the same topic
uninterrupted into its own database. Afterwards:
  - the crashed run's billing tables (invoices, invoice_line_items, usage_rollups,
    subscriptions, billing_accounts; every column but updated_at) are identical to the
    reference's, and both equal the hand-written fixtures (finals to the cent, drafts,
    reconciliation ok, rollups, stretches, accounts);
  - the crashed run's budget events, deduplicated by id, are exactly the reference's and the
    fixtures' (each id once after deduplication; repeats before it are allowed, and a repeated
    id always carries the same event).

Seed: METERD_TEST_SEED (printed); it drives the kill schedule.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, LivePublisher, caught_up, kill_loop, log, wait_for  # noqa: E402
import billing_stream as bs  # noqa: E402
from billing_check import (check_billing, check_budget, dedup_budget, dump_tables,  # noqa: E402
                           read_budget)

KILLS = int(os.environ.get("METERD_TEST_KILLS", "10"))
PUBLISH_S = float(os.environ.get("METERD_TEST_PUBLISH_S", "75"))


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d kills>=%d (replay with METERD_TEST_SEED=%d)" % (seed, KILLS, seed))
    rng = random.Random(seed)
    orgs = bs.build()
    bs.check_partitions(orgs)
    bs.self_check(orgs)
    msgs = bs.messages(orgs)
    with Lab("billcrash", partitions=4) as lab:
        lab.broker.stop()
        lab.broker.topics = ["usage.events:4", "usage.dlq:1", "dec.crash:4", "dec.ref:4",
                             "budget.crash:4", "budget.ref:4"]
        lab.broker.start()
        crash = lab.pg.createdb("crash")
        ref = lab.pg.createdb("ref")

        chunk = 20
        pub = LivePublisher(lab.broker.bootstrap, msgs, chunk,
                            PUBLISH_S / (len(msgs) / chunk)).start()
        # flushes once a second, so that a kill loses (and the restart replays) more work
        d = lab.daemon("crash", dsn=crash, group="crash",
                       extra=["--kafka.decisions_topic=dec.crash",
                              "--kafka.budget_topic=budget.crash",
                              "--meter.flush_interval_ms=1000"])
        consuming, starting = kill_loop(d, rng, pub.done, KILLS)
        pub.join()
        ends = pub.ends
        d.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="crash"), 240, "the crashed run to catch up")
        assert d.stop() == 0, "meterd did not stop cleanly:\n" + d.tail()
        log("crashed run caught up after %d kills (%d consuming, %d starting)" %
            (consuming + starting, consuming, starting))

        r = lab.daemon("ref", dsn=ref, group="ref",
                       extra=["--kafka.decisions_topic=dec.ref", "--kafka.budget_topic=budget.ref"])
        r.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="ref"), 240, "the reference run")
        assert r.stop() == 0, "meterd did not stop cleanly:\n" + r.tail()

        problems = []
        got, want = dump_tables(lab.pg, "crash"), dump_tables(lab.pg, "ref")
        for table in sorted(want):
            g, w = got[table], want[table]
            if g != w:
                missing = [x for x in w if x not in g][:5]
                extra = [x for x in g if x not in w][:5]
                problems.append("%s differs from the reference (%d vs %d rows):\n  missing %r\n"
                                "  extra   %r" % (table, len(g), len(w), missing, extra))
        for db in ("crash", "ref"):
            problems += ["%s: %s" % (db, p) for p in check_billing(lab.pg, db)]

        raw, schemas = read_budget(lab.broker.bootstrap, "budget.crash", problems)
        raw_ref, _ = read_budget(lab.broker.bootstrap, "budget.ref", problems)
        by_id, by_id_ref = dedup_budget(raw, problems), dedup_budget(raw_ref, problems)
        if by_id != by_id_ref:
            problems.append("budget events differ from the reference's:\n  missing %r\n"
                            "  extra   %r" % ([by_id_ref[i] for i in by_id_ref if i not in by_id],
                                              [by_id[i] for i in by_id if i not in by_id_ref]))
        if len(raw_ref) != len(by_id_ref):
            problems.append("the reference run published a budget event twice")
        check_budget(by_id, orgs, problems)
        assert not problems, "%d problem(s):\n" % len(problems) + "\n".join(problems)
        log("billing tables identical to the reference and the fixtures (%s); budget events:"
            " %d published, %d distinct = the reference's (schemas: %s)" % (
                ", ".join("%s %d" % (t, len(want[t])) for t in sorted(want)), len(raw),
                len(by_id), ", ".join(schemas)))
    log("PASS")


if __name__ == "__main__":
    main()
