#!/usr/bin/python3
# ctest: slow
"""Acceptance (admission): decisions exactly as the rules say, valid against proto/output, and
the same when a second instance joins and leaves.

python3-kafka publishes >= 100,000 admission events (agents requested / finished / cancelled,
workflows started / finished, subscription changes and cancellations with and without explicit
periods, packs, unknown runs, LLM calls, 3% repeated ids) for 1,000 organizations over about three
months (several period roll-overs).

1. One uninterrupted instance. python3-kafka reads meter.decisions and validates every message
   against its JSON Schema in proto/output (python3-jsonschema). The decisions, their order per
   organization, usage_records and agent_runs equal an independent model of the rules
   (tests/lib/admission.py), decision ids included (XXH3 via python3-xxhash).
2. The same stream into a second database, live-published, with instance B joining while A
   consumes and leaving (SIGTERM) before the end: the set of decisions deduplicated by id equals
   run 1's, and usage_records and agent_runs are identical.

Seed: METERD_TEST_SEED (printed).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, LivePublisher, caught_up, log, producer, publish, wait_for  # noqa: E402
from admission import AdmissionStream, Model, load_tiers  # noqa: E402
from admission_check import (dedup, diff_maps, fetch_runs, fetch_usage,  # noqa: E402
                             per_org_sequences, read_decisions)

EVENTS = int(os.environ.get("METERD_TEST_EVENTS", "110000"))
ORGS = int(os.environ.get("METERD_TEST_ORGS", "1000"))


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d events=%d orgs=%d (replay with METERD_TEST_SEED=%d)" % (seed, EVENTS, ORGS, seed))
    s = AdmissionStream(seed, EVENTS, ORGS)
    model = Model(load_tiers())
    for ev in s.events:
        model.apply(ev)
    kinds = {}
    for d in model.decisions:
        kinds[d["type"]] = kinds.get(d["type"], 0) + 1
    log("model: %d decisions %s, %d usage records, %d runs" %
        (len(model.decisions), kinds, len(model.usage), len(model.runs)))
    assert all(kinds.get(k, 0) > 100 for k in
               ("agent.admitted", "agent.queued", "workflow.held", "workflow.released")), kinds

    with Lab("admission", partitions=16) as lab:
        lab.broker.stop()
        lab.broker.topics = ["usage.events:16", "live.events:16", "usage.dlq:4", "dec.one:4",
                             "dec.two:4"]
        lab.broker.start()
        one = lab.pg.createdb("one")
        two = lab.pg.createdb("two")

        # ---- 1: uninterrupted, against the model
        t = time.time()
        ends = publish(producer(lab.broker.bootstrap), "usage.events", s.messages)
        log("published %d messages in %.1fs" % (len(s.messages), time.time() - t))
        a = lab.daemon("one", dsn=one, group="one", extra=["--kafka.decisions_topic=dec.one"])
        a.start()
        wait_for(lambda: caught_up(lab.pg, ends, db="one"), 240, "run 1 to catch up")
        assert a.stop() == 0
        got = read_decisions(lab.broker.bootstrap, "dec.one")
        log("run 1: %d decisions, all valid against proto/output" % len(got))
        by_id = dedup(got)
        want = {d["id"]: d for d in model.decisions}
        assert len(want) == len(model.decisions), "the model made two decisions with one id"
        missing = [want[i] for i in want if i not in by_id][:5]
        extra = [by_id[i] for i in by_id if i not in want][:5]
        assert not missing and not extra, "decisions differ from the model:\nmissing %r\nextra %r" % (
            missing, extra)
        for i, d in want.items():
            assert by_id[i] == d, "decision %s: expected %r, got %r" % (i, d, by_id[i])
        assert per_org_sequences(got) == per_org_sequences(model.decisions), "order differs"
        usage, runs = fetch_usage(lab.pg, "one"), fetch_runs(lab.pg, "one")
        diffs = diff_maps(model.usage, usage, "usage") + diff_maps(model.runs, runs, "run")
        assert not diffs, "\n".join(diffs)
        log("run 1 equals the model: %d decisions, %d usage records, %d agent runs" %
            (len(by_id), len(usage), len(runs)))

        # ---- 2: a second instance joins, then leaves, while the stream is published live
        extra = ["--kafka.decisions_topic=dec.two", "--kafka.input_topic=live.events"]
        a = lab.daemon("two-a", dsn=two, group="two", extra=extra)
        b = lab.daemon("two-b", dsn=two, group="two", extra=extra)
        a.start()
        wait_for(lambda: a.stats().get("partitions") == 16, 60, "A to own all partitions")
        pub = LivePublisher(lab.broker.bootstrap, s.messages, 2500, 1.2,
                            topic="live.events").start()
        time.sleep(8)
        b.start()
        wait_for(lambda: b.stats().get("partitions", 0) > 0, 90, "B to join")
        log("B joined: A owns %d, B owns %d partitions" % (a.stats().get("partitions", 0),
                                                            b.stats().get("partitions", 0)))
        time.sleep(5)
        assert not pub.done.is_set(), "the stream ended before B left"
        assert b.stop() == 0
        log("B left mid-stream")
        pub.join()
        wait_for(lambda: caught_up(lab.pg, pub.ends, topic="live.events", db="two"), 240,
                 "run 2 to catch up")
        assert a.stop() == 0
        got2 = dedup(read_decisions(lab.broker.bootstrap, "dec.two"))
        assert got2 == by_id, "run 2's decisions differ from run 1's (%d vs %d)" % (
            len(got2), len(by_id))
        assert fetch_usage(lab.pg, "two") == usage
        assert fetch_runs(lab.pg, "two") == runs
        log("run 2 (join and leave): same %d decisions, usage records and agent runs" % len(got2))
    log("PASS")


if __name__ == "__main__":
    main()
