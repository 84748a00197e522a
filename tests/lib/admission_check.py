"""admission_check — reading and checking what meterd decided, shared by the admission tests."""

import datetime
import glob
import json
import os

import jsonschema
import msgpack

from meterlab import SOURCE, read_topic


def validators():
    """One checked validator per output schema in proto/output (python3-jsonschema)."""
    out = {}
    for path in glob.glob(os.path.join(SOURCE, "proto", "output", "*.schema.json")):
        with open(path) as f:
            s = json.load(f)
        cls = jsonschema.validators.validator_for(s)
        cls.check_schema(s)
        out[s["title"]] = cls(s)
    return out


def read_decisions(bootstrap, topic, validate=True):
    """All decisions on `topic`, decoded; each validated against its JSON Schema in proto/output
    (python3-jsonschema) when validate. Returns (list in topic order, number of messages)."""
    val = validators() if validate else {}
    out = []
    for rec in read_topic(bootstrap, topic):
        d = msgpack.unpackb(rec.value, raw=False)
        assert rec.key == d["org"].encode(), "decision keyed %r, org %r" % (rec.key, d["org"])
        if validate:
            val[d["type"]].validate(d)
        out.append(d)
    return out


def dedup(decisions):
    """{id: decision}; a repeated id must carry the same decision."""
    by_id = {}
    for d in decisions:
        prev = by_id.setdefault(d["id"], d)
        assert prev == d, "id %s names two different decisions:\n%r\n%r" % (d["id"], prev, d)
    return by_id


def per_org_sequences(decisions):
    """{org: [decision ids in publish order, first occurrence only]}."""
    seen, out = set(), {}
    for d in decisions:
        if d["id"] in seen:
            continue
        seen.add(d["id"])
        out.setdefault(d["org"], []).append(d["id"])
    return out


def ms(v):
    """A psql timestamptz text (UTC session) to Unix ms, or None."""
    if v == "":
        return None
    v = v.replace(" ", "T")
    if v.endswith("+00"):
        v = v[:-3] + "+00:00"
    return int(round(datetime.datetime.fromisoformat(v).timestamp() * 1000))


def fetch_usage(pg, db):
    rows = pg.psql("SET TIME ZONE 'UTC'; SELECT org_id, workflow_id, requested_at, project_id,"
                   " complexity, status, tier, started_at, finished_at, billed, overage"
                   " FROM usage_records", db)
    out = {}
    for r in rows:
        out[(r[0], r[1], ms(r[2]))] = {
            "project": r[3], "complexity": r[4], "status": r[5], "tier": r[6],
            "started_at": ms(r[7]), "finished_at": ms(r[8]), "billed": r[9] == "t",
            "overage": r[10] == "t"}
    return out


def fetch_runs(pg, db):
    rows = pg.psql("SET TIME ZONE 'UTC'; SELECT org_id, run_id, requested_at, project_id,"
                   " workflow_id, status, admitted_at, finished_at, waited_ms, agent_ms"
                   " FROM agent_runs", db)
    out = {}
    for r in rows:
        out[(r[0], r[1], ms(r[2]))] = {
            "project": r[3], "workflow": r[4], "status": r[5], "admitted_at": ms(r[6]),
            "finished_at": ms(r[7]), "waited_ms": int(r[8]), "agent_ms": int(r[9])}
    return out


def diff_maps(want, got, what, limit=8):
    out = []
    for k in sorted(set(want) | set(got), key=repr):
        if want.get(k) != got.get(k):
            out.append("%s %r: expected %r, got %r" % (what, k, want.get(k), got.get(k)))
            if len(out) >= limit:
                break
    return out
