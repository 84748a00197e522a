#!/usr/bin/python3
"""Where a partition resumes: always at its PostgreSQL checkpoint, never silently elsewhere.

`meterd migrate` creates the schema; checkpoints are then planted by hand:
  - partition 0: next_offset beyond the topic's end (as after a topic was recreated, or
    retention deleted what was never applied): the daemon must stop that partition loudly —
    log "partition stopped", apply nothing of it — and go on with the others;
  - partition 1: next_offset = 5: offsets 0..4 count as applied already, 5.. are applied;
  - partitions 2 and 3: no checkpoint: consumed from the beginning.
Kafka's own committed offsets are set to the end of every partition first (by another consumer
in the same group), to show that meterd ignores them.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import BUILD, KAFKA_API, SOURCE, Lab, log, producer, wait_for  # noqa: E402
from stream import Stream  # noqa: E402


def main():
    with Lab("resume", partitions=4) as lab:
        rc = subprocess.run([os.path.join(BUILD, "meterd"), "migrate",
                             "--postgres.dsn=" + lab.pg.dsn()]).returncode
        assert rc == 0, "meterd migrate failed"
        newest = max(int(f.split("_")[0]) for f in os.listdir(os.path.join(SOURCE, "schemas"))
                     if f.endswith(".sql"))
        assert lab.pg.scalar("SELECT max(version) FROM schema_migrations") == str(newest)

        s = Stream(seed=7, events=4000, orgs=40, repeat_pct=0, poison_pct=0)
        prod = producer(lab.broker.bootstrap)
        futures = [prod.send("usage.events", key=k, value=v) for k, v in s.messages]
        prod.flush()
        placed = [f.get(timeout=30) for f in futures]
        ends = {}
        for md in placed:
            ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
        assert set(ends) == {0, 1, 2, 3}, ends

        # Kafka's committed offsets at the end: meterd must not use them.
        import kafka
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata
        c = kafka.KafkaConsumer(bootstrap_servers=lab.broker.bootstrap, api_version=KAFKA_API,
                                group_id="meterd", enable_auto_commit=False)
        c.commit({TopicPartition("usage.events", p): OffsetAndMetadata(o, "")
                  for p, o in ends.items()})
        c.close()

        lab.pg.psql("INSERT INTO consumer_checkpoints (topic, partition, next_offset, epoch)"
                    " VALUES ('usage.events', 0, %d, 3), ('usage.events', 1, 5, 7)"
                    % (ends[0] + 1000))
        d = lab.daemon("a").start()
        want = sum(1 for md in placed if md.partition in (2, 3) or
                   (md.partition == 1 and md.offset >= 5))

        def applied():
            return int(lab.pg.scalar("SELECT coalesce(sum(calls), 0) FROM cost_records"))
        wait_for(lambda: applied() == want, 60, "partitions 1-3 to be applied")
        wait_for(lambda: any(x.get("msg", "").startswith("partition stopped")
                             for x in d.log_lines()), 30, "partition 0 to be stopped")
        time.sleep(1)
        assert applied() == want, "more than partitions 1-3 applied"
        rows = dict(lab.pg.psql("SELECT partition, coalesce(next_offset, -1) FROM "
                                "consumer_checkpoints"))
        assert int(rows["0"]) == ends[0] + 1000, "partition 0's checkpoint moved: %r" % rows
        for p in (1, 2, 3):
            assert int(rows[str(p)]) == ends[p], rows
        stopped = [x for x in d.log_lines() if x.get("msg", "").startswith("partition stopped")]
        assert all(x["partition"] == 0 for x in stopped), stopped
        epochs = dict(lab.pg.psql("SELECT partition, epoch FROM consumer_checkpoints"))
        assert epochs["0"] == "4" and epochs["1"] == "8" and epochs["2"] == "1", epochs
        assert d.stop() == 0
        log("partition 0 stopped at its out-of-range checkpoint; 1 resumed at 5; 2-3 from 0")
    log("PASS")


if __name__ == "__main__":
    main()
