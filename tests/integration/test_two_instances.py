#!/usr/bin/python3
# ctest: slow
"""Acceptance: two instances in one consumer group; one dies mid-stream; totals stay exact.

Scenario 1 (failover): instances A and B share the group and split the 16 partitions while the
stream is published live; A is killed with SIGKILL mid-stream; after the session timeout B is
assigned A's partitions, claims them in PostgreSQL (bumping their epochs), resumes from A's last
checkpoints and finishes. cost_records must equal the independent computation.

Scenario 2 (fencing): A and B again, A with a long flush interval so that it holds applied but
unflushed events; A is frozen with SIGSTOP, B takes its partitions over and finishes, then A is
thawed with SIGCONT and tries to flush what it held. Its checkpoint update is conditional on the
epoch it claimed, which B bumped, so the flush is refused ("partition fenced") and nothing of A's
stale state reaches PostgreSQL: the totals are still exact.

Seed: METERD_TEST_SEED (printed).
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, LivePublisher, caught_up, log, producer, publish, wait_for  # noqa: E402
from stream import Stream, compare_rows, fetch_rows  # noqa: E402

EVENTS = int(os.environ.get("METERD_TEST_EVENTS", "60000"))


def ready_partitions(d):
    return {x["partition"] for x in d.log_lines() if x.get("msg") == "partition ready"}


def owned(d):
    """Partitions the instance consumes now, from its last stats line."""
    return d.stats().get("partitions", 0)


def main():
    seed = int(os.environ.get("METERD_TEST_SEED", str(int(time.time()) % 100000)))
    log("seed=%d events=%d (replay with METERD_TEST_SEED=%d)" % (seed, EVENTS, seed))
    s = Stream(seed=seed, events=EVENTS, orgs=100)

    with Lab("two", partitions=16) as lab:
        lab.broker.stop()
        lab.broker.topics = ["usage.events:16", "fencing.events:16", "usage.dlq:4"]
        lab.broker.start()
        # ---- scenario 1: failover while the stream is published live
        dsn1 = lab.pg.createdb("failover")
        a = lab.daemon("a1", dsn=dsn1, group="failover")
        b = lab.daemon("b1", dsn=dsn1, group="failover")
        a.start()
        b.start()
        pub = LivePublisher(lab.broker.bootstrap, s.messages, (len(s.messages) + 19) // 20,
                            1.5).start()
        ends = pub.ends
        wait_for(lambda: owned(a) > 0 and owned(b) > 0 and owned(a) + owned(b) == 16, 90,
                 "A and B to split the partitions")
        time.sleep(3)
        log("A owns %d, B owns %d partitions; SIGKILL A mid-stream" % (owned(a), owned(b)))
        assert not pub.done.is_set(), "the stream ended before the kill"
        a.kill()
        pub.join()
        wait_for(lambda: caught_up(lab.pg, ends, db="failover"), 120, "B to finish A's partitions")
        assert b.stop() == 0
        assert owned(b) == 0  # after leaving the group
        took_over = ready_partitions(b)
        assert len(took_over) == 16, "B never owned all partitions: %r" % took_over
        diffs = compare_rows(s.expected_rows, fetch_rows(lab.pg, "failover"))
        assert not diffs, "failover totals differ:\n" + "\n".join(diffs)
        log("failover: totals exact after B took over A's partitions")

        # ---- scenario 2: a frozen instance's in-flight flush is fenced when it wakes up
        # A psql session holds the checkpoint rows locked, so both instances' flushes wait in
        # the middle of their transactions while they apply the stream. A is frozen (SIGSTOP)
        # with its flush in flight, the lock is released: A's server session finishes the
        # UPDATE and then sits idle in its transaction, until idle_in_transaction_session_timeout
        # ends it and frees the rows. B, assigned A's partitions after the session timeout,
        # claims them (bumping the epoch) and finishes them from A's last checkpoint. A is
        # thawed (SIGCONT): it reconnects and retries its flush, whose checkpoint update no
        # longer matches the epoch: fenced, nothing written.
        dsn2 = lab.pg.createdb("fencing")
        extra = ["--postgres.idle_in_transaction_timeout_ms=3000",
                 "--kafka.input_topic=fencing.events"]
        a = lab.daemon("a2", dsn=dsn2, group="fencing", extra=extra)
        b = lab.daemon("b2", dsn=dsn2, group="fencing", extra=extra)
        a.start()
        b.start()
        wait_for(lambda: owned(a) > 0 and owned(b) > 0 and owned(a) + owned(b) == 16, 90,
                 "A and B to split the partitions")
        lock = subprocess.Popen(
            ["psql", "-X", "-q", "-h", lab.pg.sock, "-U", "meterd", "-d", "fencing"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        # psql then idles inside the transaction; killing it ends the session and its locks.
        lock.stdin.write("BEGIN; SELECT * FROM consumer_checkpoints FOR UPDATE;\n")
        lock.stdin.flush()
        wait_for(lambda: lab.pg.scalar("SELECT count(*) FROM pg_locks l JOIN pg_class c"
                                       " ON c.oid = l.relation WHERE c.relname ="
                                       " 'consumer_checkpoints' AND l.mode = 'RowShareLock'",
                                       db="fencing") != "0", 30, "the row locks")
        ends2 = publish(producer(lab.broker.bootstrap), "fencing.events", s.messages)
        wait_for(lambda: a.stats().get("uncommitted", 0) > 0, 60, "A to apply events")
        time.sleep(1)  # the next flush timer seals them: A's flush is now waiting on the locks
        held = a.stats()["uncommitted"]
        log("A holds %d applied messages in a blocked flush; SIGSTOP A, release the locks" % held)
        a.kill(signal.SIGSTOP)
        lock.kill()
        lock.wait()
        wait_for(lambda: caught_up(lab.pg, ends2, topic="fencing.events", db="fencing"), 120,
                 "B to take over and finish")
        log("B finished A's partitions; SIGCONT A")
        a.kill(signal.SIGCONT)
        wait_for(lambda: any(x.get("msg", "").startswith("partition fenced")
                             for x in a.log_lines()), 60, "A's stale flush to be fenced")
        fenced = [x for x in a.log_lines() if x.get("msg", "").startswith("partition fenced")]
        log("A: %d batches fenced" % len(fenced))
        assert a.stop() == 0
        assert b.stop() == 0
        diffs = compare_rows(s.expected_rows, fetch_rows(lab.pg, "fencing"))
        assert not diffs, "fencing totals differ:\n" + "\n".join(diffs)
        log("fencing: the thawed instance wrote nothing; totals exact")
    log("PASS")


if __name__ == "__main__":
    main()
