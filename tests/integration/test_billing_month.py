#!/usr/bin/python3
"""Acceptance (billing): one month of usage through the real daemon gives, to the cent, the
invoices worked out by hand.

python3-kafka publishes the stream of tests/lib/billing_stream.py (about 2,000 events, keyed by
org, on 4 partitions by the default murmur2 partitioner): January 2026 for one organization of
each tier (free, pro, team, enterprise, lifetime, byo, payg), one upgrading pro → team at an
exact instant, one on the new_year promotion followed for four months, one with prepaid credits
larger than a month (the rest carries into the next period), one whose credits run out, one
with a budget, a Free one over its workflow quota, and one whose pro subscription starts a new
period mid-month (cutting its Free period short) and is cancelled later; each with workflows of
every complexity (beyond the quota on the paid tiers), LLM calls with byo true and false on
three providers and an unpriced model, API calls, storage reports (over Free's 2 GB and
Lifetime's 50 GB; all of it on PAYG) and agent runs (one ending after its period closed); four
billing events are published again later, id and all. After the month, each organization's own
next event closes its period, except three silent ones closed only by a later event of another
organization in their partition (period end + 1 hour); the enterprise one has four periods
closed that way.

One uninterrupted instance reads it. Then:
  - the final invoices and their lines (kind, detail, quantity_raw, quantity_scale,
    unit_price_micros, amount_cents; subtotal, credits, total) equal the hand-written fixtures;
  - every organization has exactly one draft, of its open period, with the expected amounts;
  - every row of invoice_reconciliation is ok;
  - usage_rollups of every closed period equal the hand counts (and agent-ms and released
    workflows land in the next, open period); tier stretches and accounts (credits carried and
    used up, budget) are as expected;
  - budget.events holds exactly the expected budget events, each once, with the documented
    deterministic id ("b-" + 32 hex), valid against proto/output/budget.*.schema.json;
  - the Free organization's workflows over quota were held and released in the next period;
  - the four duplicates were counted as such and changed nothing; nothing was dead-lettered;
    each organization's events are on the planned partition.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, caught_up, log, producer, publish, read_topic, wait_for  # noqa: E402
import billing_stream as bs  # noqa: E402
from billing_check import check_billing, check_budget, dedup_budget, read_budget  # noqa: E402
from admission_check import read_decisions  # noqa: E402

TOPICS = ["usage.events:4", "usage.dlq:1", "meter.decisions:4", "budget.events:4"]


def check_held(bootstrap, orgs, problems):
    """freeq-9: its 6th and 7th workflows held in January, released by its first February
    event (Feb 1 00:20), oldest first."""
    m = orgs["freeq-9"].marks
    got = [(d["type"], d["workflow"], d["cause"], d.get("position"), d.get("waited_ms"))
           for d in read_decisions(bootstrap, "meter.decisions")
           if d["org"] == "freeq-9" and d["type"].startswith("workflow.")]
    close = bs.FEB1 + 20 * bs.MIN
    want = [("workflow.held", "w0006", m["wf6"], 1, None),
            ("workflow.held", "w0007", m["wf7"], 2, None),
            ("workflow.released", "w0006", m["close"], None, close - bs.jan(2, 15)),
            ("workflow.released", "w0007", m["close"], None, close - bs.jan(2, 16))]
    if got != want:
        problems.append("freeq-9 decisions:\n  expected %r\n  got      %r" % (want, got))


def main():
    orgs = bs.build()
    bs.check_partitions(orgs)
    bs.self_check(orgs)
    msgs = bs.messages(orgs)
    log("stream: %d events for %d organizations" % (len(msgs), len(orgs)))
    t0 = time.time()
    with Lab("billmonth", partitions=4) as lab:
        lab.broker.stop()
        lab.broker.topics = TOPICS
        lab.broker.start()
        ends = publish(producer(lab.broker.bootstrap), "usage.events", msgs)
        d = lab.daemon("month")
        d.start()
        wait_for(lambda: caught_up(lab.pg, ends), 120, "meterd to consume the stream")
        assert d.stop() == 0, "meterd did not stop cleanly:\n" + d.tail()
        stats = d.stats()
        assert (stats.get("applied"), stats.get("duplicates")) == (
            len(msgs) - bs.duplicates(orgs), bs.duplicates(orgs)), stats
        log("consumed %d events in %.1fs (with start-up)" % (len(msgs), time.time() - t0))

        problems = []
        for rec in read_topic(lab.broker.bootstrap, "usage.events"):
            org = rec.key.decode()
            if rec.partition != orgs[org].partition:
                problems.append("%s's event on partition %d" % (org, rec.partition))
                break
        dlq = read_topic(lab.broker.bootstrap, "usage.dlq")
        if dlq:
            problems.append("%d dead letters, first %r" % (len(dlq), dlq[0].headers))

        problems += check_billing(lab.pg, "meterd")
        raw, schemas = read_budget(lab.broker.bootstrap, "budget.events", problems)
        by_id = dedup_budget(raw, problems)
        if len(raw) != len(by_id):
            problems.append("an uninterrupted run published a budget event twice: %d events,"
                            " %d ids" % (len(raw), len(by_id)))
        check_budget(by_id, orgs, problems)
        check_held(lab.broker.bootstrap, orgs, problems)
        assert not problems, "%d problem(s):\n" % len(problems) + "\n".join(problems)
        log("%d final invoices and %d drafts equal the fixtures; reconciliation ok; %d budget"
            " events valid against %s" % (len(bs.EXPECTED_FINALS), len(bs.EXPECTED_DRAFTS),
                                          len(by_id), ", ".join(schemas)))
    log("PASS")


if __name__ == "__main__":
    main()
