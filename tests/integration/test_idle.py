#!/usr/bin/python3
"""An idle meterd keeps its partitions.

librdkafka counts a consumer that has not called rd_kafka_consumer_poll for
max.poll.interval.ms as dead, leaves the group and loses the assignment. meterd polls when
messages arrive and from a one-second timer, so a quiet topic must not cost a rebalance. With
max.poll.interval.ms shortened to 10 s, the daemon idles for 25 s between two bursts: one
assignment only, no "maximum poll interval" error, and the second burst is applied.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, caught_up, log, producer, publish, wait_for  # noqa: E402
from stream import Stream, compare_rows, fetch_rows  # noqa: E402


def main():
    s = Stream(seed=11, events=4000, orgs=20, repeat_pct=0, poison_pct=0)
    half = len(s.messages) // 2
    with Lab("idle", partitions=4) as lab:
        d = lab.daemon("a", extra=["--kafka.consumer.max.poll.interval.ms=10000"]).start()
        prod = producer(lab.broker.bootstrap)
        ends = publish(prod, "usage.events", s.messages[:half])
        wait_for(lambda: caught_up(lab.pg, ends), 60, "the first burst")
        log("first burst applied; idling 25 s (max.poll.interval.ms is 10 s)")
        time.sleep(25)
        ends2 = publish(prod, "usage.events", s.messages[half:])
        for p, o in ends2.items():
            ends[p] = max(ends.get(p, 0), o)
        wait_for(lambda: caught_up(lab.pg, ends), 60, "the second burst")
        assert d.stop() == 0
        lines = d.log_lines()
        assigned = [x for x in lines if x.get("msg") == "partitions assigned"]
        stalls = [x for x in lines if "maximum poll interval" in str(x.get("error", ""))]
        assert not stalls, "the consumer was considered dead while idle: %r" % stalls[:1]
        assert len(assigned) == 1, "%d assignments: the partitions moved while idle" % len(assigned)
        diffs = compare_rows(s.expected_rows, fetch_rows(lab.pg))
        assert not diffs, "\n".join(diffs)
        log("idle for 25 s without losing the partitions; both bursts applied exactly")
    log("PASS")


if __name__ == "__main__":
    main()
