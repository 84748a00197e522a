#!/usr/bin/python3
"""Acceptance (operate it): SIGHUP changes prices for later events only; SIGTERM under load
exits 0 within 10 s and loses nothing.

1. meterd runs on a copy of deploy/prices.ini. Stream A is published and made durable. The copy
   is edited (one model's four prices multiplied by three) and meterd gets SIGHUP: it logs the
   reload, keeps running, keeps its state (no partition is reloaded). Stream B is published.
   cost_records equal A priced with the old table plus B with the new one, computed here
   independently (Decimal arithmetic of tests/lib/stream.py).
2. Stream C is published live; while meterd consumes it, SIGTERM: meterd exits with status 0
   in less than 10 seconds (it drains: flush, checkpoint, leave the group). A new process
   finishes the stream; the totals of A + B + C are exact — nothing lost, nothing doubled.

Seed: METERD_TEST_SEED (printed).
"""
import os
import re
import signal
import sys
import time

import msgpack

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import (PRICES, Lab, LivePublisher, caught_up, log, producer, publish,  # noqa: E402
                      wait_for)
from stream import Stream, compare_rows, fetch_rows, load_prices  # noqa: E402

MODEL = "anthropic/claude-opus-4-5"


def reprice(stream, prices):
    """The stream's expected cost rows under another price table."""
    poison = set(v for v, _ in stream.poison)
    stream.prices, stream.expected_rows, seen = prices, {}, set()
    for _, value in stream.messages:
        if value in poison:
            continue
        ev = msgpack.unpackb(value, raw=False)
        if (ev["org"], ev["id"]) in seen:
            continue
        seen.add((ev["org"], ev["id"]))
        if ev["type"] == "llm.call":
            stream._account(ev)
    return stream.expected_rows


def add_rows(total, rows):
    for k, row in rows.items():
        total[k] = [a + b for a, b in zip(total[k], row)] if k in total else list(row)


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d (replay with METERD_TEST_SEED=%d)" % (seed, seed))
    with Lab("signals", partitions=4) as lab:
        prices_path = os.path.join(lab.dir, "prices.ini")
        with open(PRICES) as f:
            original = f.read()
        with open(prices_path, "w") as f:
            f.write(original)
        d = lab.daemon("a", extra=["--meter.prices_file=" + prices_path]).start()
        wait_for(lambda: d.stats().get("partitions") == 4, 60, "the daemon to own the partitions")

        # ---- 1: SIGHUP
        a = Stream(seed=seed, events=6000, orgs=30)
        want = {}
        add_rows(want, a.expected_rows)
        ends = publish(producer(lab.broker.bootstrap), "usage.events", a.messages)
        wait_for(lambda: caught_up(lab.pg, ends), 60, "stream A to be durable")
        # one model's prices times three
        section = re.compile(r"(\[%s\]\n(?:[a-z_]+ = [0-9.]+\n)+)" % re.escape(MODEL))
        block = section.search(original).group(1)
        tripled = re.sub(r"= ([0-9.]+)", lambda m: "= %s" % (3 * float(m.group(1))), block)
        with open(prices_path, "w") as f:
            f.write(original.replace(block, tripled))
        new_prices = load_prices(prices_path)
        assert new_prices[tuple(MODEL.split("/"))] != load_prices(PRICES)[tuple(MODEL.split("/"))]
        loads_before = sum(1 for x in d.log_lines() if x.get("msg") == "partition ready")
        d.kill(signal.SIGHUP)
        wait_for(lambda: any(x.get("msg") == "price and tier tables reloaded"
                             for x in d.log_lines()), 30, "the reload")
        b = Stream(seed=seed + 1, events=6000, orgs=30)
        add_rows(want, reprice(b, new_prices))
        ends = publish(producer(lab.broker.bootstrap), "usage.events", b.messages)
        wait_for(lambda: caught_up(lab.pg, ends), 60, "stream B to be durable")
        assert d.running() and d.starts == 1
        assert sum(1 for x in d.log_lines() if x.get("msg") == "partition ready") == loads_before
        diffs = compare_rows(want, fetch_rows(lab.pg))
        assert not diffs, "\n".join(diffs)
        used = sum(1 for _, v in b.messages if MODEL.split("/")[1].encode() in v)
        log("SIGHUP: A at the old prices, B (%d messages naming %s) at the new ones: exact" %
            (used, MODEL))

        # ---- 2: SIGTERM under load
        c = Stream(seed=seed + 2, events=30000, orgs=30)
        add_rows(want, reprice(c, new_prices))
        pub = LivePublisher(lab.broker.bootstrap, c.messages, 1500, 0.2).start()
        applied0 = d.stats().get("applied", 0)
        wait_for(lambda: d.stats().get("applied", 0) > applied0 + 5000, 60, "C to flow")
        t0 = time.time()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(30)
        took = time.time() - t0
        assert rc == 0, "exit status %s after SIGTERM:\n%s" % (rc, d.tail())
        assert took < 10, "SIGTERM took %.1f s" % took
        log("SIGTERM under load: exit 0 in %.2f s" % took)
        pub.join()
        d.start()
        wait_for(lambda: caught_up(lab.pg, pub.ends), 120, "the restart to finish C")
        assert d.stop() == 0
        diffs = compare_rows(want, fetch_rows(lab.pg))
        assert not diffs, "\n".join(diffs)
        log("after the restart: A + B + C exact")
    log("PASS")


if __name__ == "__main__":
    main()
