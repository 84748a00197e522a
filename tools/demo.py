#!/usr/bin/python3
"""The local demo behind scripts/demo.sh: real PostgreSQL under ./run, the mock Kafka cluster,
the real meterd, a sample stream, and a report of what meterd did."""
import os
import signal
import sys
import time
import urllib.request

import msgpack

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from meterlab import Broker, Daemon, Postgres, caught_up, producer, publish, read_topic, wait_for  # noqa: E402
from stream import Stream  # noqa: E402
from admission import AdmissionStream  # noqa: E402

RUN = os.path.join(ROOT, "run")


def show(title, pg, sql):
    print("\n" + title)
    os.system("psql -X -h %s -p %d -U meterd -d meterd -P footer=off -c \"%s\"" %
              (pg.sock, pg.port, sql.replace('"', '\\"')))


def main():
    keep = "--keep" in sys.argv
    os.makedirs(RUN, exist_ok=True)
    os.chmod(RUN, 0o755)
    print("meterd demo: PostgreSQL under %s/pg, mock Kafka cluster, meterd %s/build/meterd" %
          (RUN, ROOT))
    pg = Postgres(os.path.join(RUN, "pg"), fsync=True).start()
    # A fresh mock broker starts its offsets at 0: start from an empty database too, or the
    # checkpoints of the last demo would point past the new topic's end.
    pg.psql("DROP DATABASE IF EXISTS meterd WITH (FORCE)", db="postgres")
    pg.psql("CREATE DATABASE meterd", db="postgres")
    broker = Broker(partitions=8).start()
    d = Daemon("demo", broker.bootstrap, pg.dsn(), RUN, extra=["--meter.stats_interval_ms=5000"])
    if os.path.exists(d.logpath):
        os.unlink(d.logpath)
    try:
        d.start()
        s = Stream(seed=42, events=20000, orgs=25)
        print("publishing %d events (%d distinct LLM calls, %d repeated ids, %d poison) to "
              "usage.events at %s" % (len(s.messages), len(s.applied_ids), s.duplicates,
                                      len(s.poison), broker.bootstrap))
        a = AdmissionStream(7, 8000, 40)
        print("publishing %d admission events (agent runs, workflows, subscriptions, packs) for "
              "40 more organizations" % len(a.messages))
        t = time.time()
        ends = publish(producer(broker.bootstrap), "usage.events", s.messages + a.messages)
        wait_for(lambda: caught_up(pg, ends), 120, "meterd to apply the stream")
        print("meterd applied the stream and checkpointed it %.1fs after publishing began" %
              (time.time() - t))

        show("Cost per organization (top 10; list price, billable = not byo):", pg,
             "SELECT org_id, sum(calls) AS calls, "
             "to_char(sum(cost_nanos) / 1e9, 'FM999990.000000') AS cost_usd, "
             "to_char(sum(cost_nanos) FILTER (WHERE billable) / 1e9, 'FM999990.000000') "
             "AS billable_usd, sum(unpriced_calls) AS unpriced "
             "FROM cost_records GROUP BY org_id ORDER BY sum(cost_nanos) DESC LIMIT 10")
        show("Cost per provider:", pg,
             "SELECT provider, sum(calls) AS calls, sum(input_tokens) AS input_tokens, "
             "sum(output_tokens) AS output_tokens, "
             "to_char(sum(cost_nanos) / 1e9, 'FM999990.000000') AS cost_usd "
             "FROM cost_records GROUP BY provider ORDER BY provider")
        show("Checkpoints (one per partition, advanced in the same transaction as the data):",
             pg, "SELECT partition, next_offset, epoch, owner FROM consumer_checkpoints "
                 "ORDER BY partition")
        show("Agent runs and workflows (per status; agent-hours = sum of agent_ms):", pg,
             "SELECT 'agent run' AS what, status, count(*),"
             " round(sum(agent_ms) / 3.6e6, 1) AS agent_hours FROM agent_runs GROUP BY status"
             " UNION ALL SELECT 'workflow', status, count(*), NULL FROM usage_records"
             " GROUP BY status ORDER BY 1, 2")
        show("Invoices (drafts until the period ends, then final), by current tier and status:",
             pg,
             "SELECT a.tier, i.status, count(*) AS invoices,"
             " to_char(sum(i.subtotal_cents) / 100.0, 'FM9999990.00') AS subtotal_usd,"
             " to_char(sum(i.credits_cents) / 100.0, 'FM9999990.00') AS credits_usd,"
             " to_char(sum(i.total_cents) / 100.0, 'FM9999990.00') AS total_usd"
             " FROM invoices i JOIN billing_accounts a USING (org_id)"
             " GROUP BY 1, 2 ORDER BY 1, 2")
        show("The largest invoice, line by line:", pg,
             "SELECT l.line_no, l.kind, l.description,"
             " to_char(l.amount_cents / 100.0, 'FM9999990.00') AS usd"
             " FROM invoice_line_items l WHERE l.invoice_id = (SELECT id FROM invoices"
             " ORDER BY total_cents DESC, id LIMIT 1) ORDER BY l.line_no")
        show("Reconciliation (invoice_reconciliation: every line recomputed, totals re-summed):",
             pg, "SELECT count(*) AS invoices, count(*) FILTER (WHERE ok) AS ok,"
                 " count(*) FILTER (WHERE NOT ok) AS not_ok FROM invoice_reconciliation")
        budget = [msgpack.unpackb(r.value) for r in read_topic(broker.bootstrap, "budget.events")]
        print("\nBudget events on budget.events: %d" % len(budget))
        for b in budget[:3]:
            print("  e.g. %s" % b)
        decisions = [msgpack.unpackb(r.value) for r in read_topic(broker.bootstrap,
                                                                   "meter.decisions")]
        kinds = {}
        for dec in decisions:
            kinds[dec["type"]] = kinds.get(dec["type"], 0) + 1
        print("\nAdmission decisions on meter.decisions: %d, by type:" % len(decisions))
        for k in sorted(kinds):
            print("  %-18s %d" % (k, kinds[k]))
        for k in ("agent.queued", "workflow.held", "workflow.released"):
            ex = next((dec for dec in decisions if dec["type"] == k), None)
            if ex:
                print("  e.g. %s" % ex)
        dlq = read_topic(broker.bootstrap, "usage.dlq")
        reasons = {}
        for r in dlq:
            h = dict(r.headers)
            reasons[h["error"].decode()] = reasons.get(h["error"].decode(), 0) + 1
        print("\nDead-letter topic usage.dlq: %d messages, by error header:" % len(dlq))
        for k in sorted(reasons):
            print("  %-16s %d" % (k, reasons[k]))
        with urllib.request.urlopen(d.url("/readyz"), timeout=5) as r:
            print("\nGET %s -> %d %s" % (d.url("/readyz"), r.status, r.read().decode().strip()))
        with urllib.request.urlopen(d.url("/metrics"), timeout=5) as r:
            text = r.read().decode()
        print("GET %s -> %d lines; a few of them:" % (d.url("/metrics"), len(text.splitlines())))
        for line in text.splitlines():
            if line.startswith(("meterd_events_total{type=\"llm.call\"}",
                                "meterd_events_duplicate_total ", "meterd_invoices_finalized_total ",
                                "meterd_decisions_total{type=\"agent.admitted\"}",
                                "meterd_consumer_lag_messages ", "meterd_pg_up ")):
                print("  " + line)
        org = a.orgs[0]
        with urllib.request.urlopen(d.url("/admin/orgs/" + org, admin=True), timeout=5) as r:
            print("GET %s -> %s" % (d.url("/admin/orgs/" + org, admin=True), r.read().decode()))
        stats = [x for x in d.log_lines() if x.get("msg") == "stats"]
        d.kill(signal.SIGTERM)
        stats = [x for x in d.log_lines() if x.get("msg") == "stats"]
        if stats:
            st = stats[-1]
            print("\nmeterd's own count: %d applied, %d duplicates ignored, %d dead-lettered, "
                  "%d unpriced calls, %d flush transactions" %
                  (st["applied"], st["duplicates"], st["dead_lettered"], st["unpriced"],
                   st["flushes"]))
        print("meterd stopped on SIGTERM with exit status %s; its log: %s" %
              (d.proc.returncode, d.logpath))
        if keep:
            d.start()
            print("\n--keep: meterd, the broker (%s) and PostgreSQL (%s) keep running; Ctrl-C "
                  "stops them.\n  psql -h %s -U meterd meterd" % (broker.bootstrap, pg.dsn(),
                                                                  pg.sock))
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        if d.running():
            d.stop()
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    main()
