#!/usr/bin/python3
"""latency_bench — meterd's decision latency under sustained load.

For each rate, a fresh meterd (its own database and consumer group) owns the 16 partitions of a
fresh topic; then admission events (tests/lib/admission.py: agents requested, finished,
cancelled, workflows, subscription changes, packs) are published at that steady rate for a fixed
time by python3-kafka. meterd measures, for every decision, the time from the causing event's
arrival in meterd (the message handed over by librdkafka) to the broker's acknowledgement of the
decision, in its `meterd_decision_latency_seconds` histogram; its final stats line reports the
50th and 99th percentiles (interpolated inside the histogram's buckets, as Prometheus'
histogram_quantile does). Nothing here is asserted: it is a measurement.

    /usr/bin/python3 bench/latency_bench.py [--rates 1000,5000,10000] [--seconds 30]

Writes bench/results/latency-<time>.json and prints a markdown table.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
from meterlab import Lab, LivePublisher, caught_up, log, wait_for  # noqa: E402
from admission import AdmissionStream  # noqa: E402


def run(lab, rate, seconds, seed):
    topic = "lat.%d" % rate
    db = lab.pg.createdb("lat%d" % rate)
    s = AdmissionStream(seed, rate * seconds, 1000)
    d = lab.daemon("lat%d" % rate, dsn=db, group="lat%d" % rate,
                   extra=["--kafka.input_topic=" + topic,
                          "--kafka.decisions_topic=dec.%d" % rate,
                          "--meter.stats_interval_ms=1000"]).start()
    wait_for(lambda: d.stats().get("partitions") == 16, 60, "meterd to own the partitions")
    chunk = max(rate // 20, 1)
    t0 = time.time()
    pub = LivePublisher(lab.broker.bootstrap, s.messages, chunk, chunk / rate, topic=topic)
    pub.start()
    pub.join()
    published_s = time.time() - t0
    wait_for(lambda: caught_up(lab.pg, pub.ends, topic=topic, db=db), 300, "meterd to catch up")
    assert d.stop() == 0
    st = d.stats()
    res = {"rate_target": rate, "events": len(s.messages), "publish_seconds": round(published_s, 2),
           "rate_achieved": round(len(s.messages) / published_s),
           "decisions": st["decisions"], "p50_ms": st["decision_p50_us"] / 1000.0,
           "p99_ms": st["decision_p99_us"] / 1000.0, "flushes": st["flushes"]}
    log("rate %d/s (achieved %d/s): %d decisions, p50 %.2f ms, p99 %.2f ms" % (
        rate, res["rate_achieved"], res["decisions"], res["p50_ms"], res["p99_ms"]))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--rates", default="1000,5000,10000")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rates = [int(x) for x in args.rates.split(",")]
    topics = ["usage.dlq:4"] + ["lat.%d:16" % r for r in rates] + ["dec.%d:4" % r for r in rates]
    results = []
    with Lab("latency", partitions=16, fsync=True) as lab:
        lab.broker.stop()
        lab.broker.topics = topics
        lab.broker.start()
        for r in rates:
            results.append(run(lab, r, args.seconds, args.seed))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "latency-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump({"seconds": args.seconds, "results": results}, f, indent=1)
    print("\n| events/s (target → achieved) | decisions | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for r in results:
        print("| %d → %d | %d | %.2f ms | %.2f ms |" % (r["rate_target"], r["rate_achieved"],
                                                      r["decisions"], r["p50_ms"], r["p99_ms"]))
    log("results written to", out)


if __name__ == "__main__":
    main()
