"""admission — seeded admission streams and an independent model of the admission rules.

The model is PRODUCT.md's rules written a second time, in Python, from the documentation
(daemon/ledger.h), not from ledger.c: feeding it the published events in partition order gives
the decisions and usage records meterd must produce, to compare exactly. It includes the two
period rules billing brought: subscription periods renew on the anniversaries of their anchor,
and a silent organization's period closes (held workflows released) at the first event of its
partition an hour past its end.

Tier limits come from deploy/tiers.ini, read with configparser.
"""

import calendar
import configparser
import datetime
import os
import random

import msgpack
import xxhash
from kafka.partitioner.default import murmur2

from meterlab import SOURCE

MONTH_MS_APPROX = 30 * 86400 * 1000
CLOSE_GRACE_MS = 3600000  # a silent organization's period closes an hour past its end
BASE_TS = 1767225600000  # 2026-01-01T00:00:00Z
UNLIMITED = -1


def load_tiers(path=os.path.join(SOURCE, "deploy", "tiers.ini")):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    with open(path) as f:
        cp.read_file(f)
    tiers = {}
    for sec in cp.sections():
        if sec.startswith("promo."):
            continue
        t = cp[sec]

        def num(k):
            v = t[k].strip()
            return UNLIMITED if v == "unlimited" else int(v)
        tiers[sec] = {"agents": num("concurrent_agents"), "workflows": num("workflows"),
                      "hold": t["over_quota"].strip() == "hold",
                      "calendar": t["period"].strip() == "calendar"}
    return tiers


# ---- calendar ---------------------------------------------------------------------------

def month_start(ts):
    d = datetime.datetime.fromtimestamp(ts // 1000, datetime.timezone.utc)
    return int(datetime.datetime(d.year, d.month, 1, tzinfo=datetime.timezone.utc).timestamp()) * 1000


def add_months(ts, n):
    sec, ms = divmod(ts, 1000)
    d = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc)
    idx = d.year * 12 + d.month - 1 + n
    y, m = divmod(idx, 12)
    m += 1
    day = min(d.day, calendar.monthrange(y, m)[1])
    out = d.replace(year=y, month=m, day=day)
    return int(out.timestamp()) * 1000 + ms


# ---- the model --------------------------------------------------------------------------

class Org:
    def __init__(self, oid, ts):
        self.id = oid
        self.tier = "free"
        self.calendar = True
        self.start = month_start(ts)
        self.end = add_months(self.start, 1)
        self.anchor = None   # subscription periods start on its monthly anniversaries
        self.counted = 0
        self.packs = 0
        self.projects = {}   # pid -> {"running": int, "queue": [run ids]}, insertion-ordered
        self.runs = {}       # open runs: id -> dict
        self.wfs = {}        # open workflows: id -> dict
        self.held = []       # workflow ids, oldest first


def partition_of(org, partitions):
    """The producer's default partition of an org key (Kafka's murmur2, as python3-kafka)."""
    return (murmur2(org.encode()) & 0x7fffffff) % partitions


class Model:
    """Applies events in publish order (which is each partition's order); collects decisions
    and final records. partitions: of the input topic — a silent organization's period is
    closed by the latest ts of its partition."""

    def __init__(self, tiers, partitions=16):
        self.tiers = tiers
        self.partitions = partitions
        self.watermark = {}     # partition -> latest ts
        self.next_close = {}    # partition -> no period there ends before this
        self.part = {}          # org -> partition
        self.orgs = {}
        self.decisions = []     # dicts, as published
        self.usage = {}         # (org, workflow, requested_at) -> row dict
        self.runs = {}          # (org, run, requested_at) -> row dict
        self.seen = set()       # (org, id)

    def tier(self, o):
        return self.tiers[o.tier]

    def decide(self, ev, typ, project, subject, org=None, **kw):
        org = org or ev["org"]
        d = {"v": 1, "type": typ, "org": org, "ts": ev["ts"], "project": project,
             "cause": ev["id"]}
        d["run" if typ.startswith("agent.") else "workflow"] = subject
        d.update(kw)
        d["id"] = decision_id(org, ev["id"], typ, subject)
        self.decisions.append(d)

    def quota(self, o):
        t = self.tier(o)
        return UNLIMITED if t["workflows"] == UNLIMITED else t["workflows"] + o.packs

    def must_hold(self, o):
        q = self.quota(o)
        return self.tier(o)["hold"] and q != UNLIMITED and o.counted >= q

    def count(self, o, w, now):
        q = self.quota(o)
        w["overage"] = q != UNLIMITED and o.counted >= q
        w["billed"] = True
        w["status"] = "running"
        w["started_at"] = now
        w["tier"] = o.tier
        o.counted += 1
        self.usage_row(o, w)

    def usage_row(self, o, w):
        self.usage[(o.id, w["id"], w["requested_at"])] = {
            k: w[k] for k in ("project", "complexity", "status", "tier", "started_at",
                              "finished_at", "billed", "overage")}

    def run_row(self, o, r):
        waited = max(0, r["admitted_at"] - r["requested_at"]) if r["admitted_at"] is not None else 0
        ran = (max(0, r["finished_at"] - r["admitted_at"])
               if r["admitted_at"] is not None and r["finished_at"] is not None else 0)
        self.runs[(o.id, r["id"], r["requested_at"])] = {
            "project": r["project"], "workflow": r["workflow"], "status": r["status"],
            "admitted_at": r["admitted_at"], "finished_at": r["finished_at"],
            "waited_ms": waited, "agent_ms": ran}

    def release(self, o, ev):
        while o.held and not self.must_hold(o):
            w = o.wfs[o.held.pop(0)]
            self.count(o, w, ev["ts"])
            self.decide(ev, "workflow.released", w["project"], w["id"], org=o.id,
                        waited_ms=max(0, ev["ts"] - w["requested_at"]))

    def slot_free(self, o, p):
        lim = self.tier(o)["agents"]
        return lim == UNLIMITED or p["running"] < lim

    def admit(self, o, pid, r, ev):
        p = o.projects[pid]
        r["status"] = "running"
        r["admitted_at"] = ev["ts"]
        p["running"] += 1
        self.run_row(o, r)
        self.decide(ev, "agent.admitted", pid, r["id"],
                    waited_ms=max(0, ev["ts"] - r["requested_at"]))

    def admit_queued(self, o, pid, ev):
        p = o.projects[pid]
        while p["queue"] and self.slot_free(o, p):
            self.admit(o, pid, o.runs[p["queue"].pop(0)], ev)

    def drop_idle(self, o, pid):
        p = o.projects[pid]
        if p["running"] == 0 and not p["queue"]:
            del o.projects[pid]

    def begin(self, o, start, end):
        o.start, o.end, o.counted, o.packs = start, end, 0, 0
        self.note_end(o)

    def note_end(self, o):
        p = self.part[o.id]
        self.next_close[p] = min(self.next_close.get(p, o.end), o.end)

    def roll(self, o, ts):
        rolled = False
        while ts >= o.end:
            start = o.end
            if o.calendar:
                end = add_months(month_start(start), 1)
            else:
                if o.anchor is None or o.anchor > start:
                    o.anchor = start
                k = 1
                while add_months(o.anchor, k) <= start:
                    k += 1
                end = add_months(o.anchor, k)
            self.begin(o, start, end)
            rolled = True
        return rolled

    def apply(self, ev):
        """ev: a decoded, valid event. Returns False when it is a duplicate (no effect), None
        when it is dead-lettered."""
        applied = self._apply(ev)
        if applied:
            self.sweep(ev)  # after every applied event, no-ops included
        return applied

    def _apply(self, ev):
        key = (ev["org"], ev["id"])
        if key in self.seen:
            return False
        t = ev["type"]
        if t == "subscription.changed" and ev["tier"] not in self.tiers:
            return None  # dead-lettered (unknown_tier)
        self.seen.add(key)
        o = self.orgs.get(ev["org"])
        if o is None:
            o = self.orgs[ev["org"]] = Org(ev["org"], ev["ts"])
            self.part[o.id] = partition_of(o.id, self.partitions)
            self.note_end(o)
        if self.roll(o, ev["ts"]):
            self.release(o, ev)
        ts = ev["ts"]
        if t == "agent.requested":
            if ev["run"] in o.runs:
                return True
            r = {"id": ev["run"], "project": ev["project"], "workflow": ev.get("workflow") or "",
                 "requested_at": ts, "admitted_at": None, "finished_at": None}
            o.runs[r["id"]] = r
            p = o.projects.setdefault(ev["project"], {"running": 0, "queue": []})
            if self.slot_free(o, p):
                self.admit(o, ev["project"], r, ev)
            else:
                r["status"] = "queued"
                p["queue"].append(r["id"])
                self.run_row(o, r)
                self.decide(ev, "agent.queued", ev["project"], r["id"], position=len(p["queue"]))
        elif t in ("agent.finished", "agent.cancelled"):
            r = o.runs.pop(ev["run"], None)
            if r is None:
                return True
            p = o.projects[r["project"]]
            r["finished_at"] = ts
            if r["status"] == "queued":
                p["queue"].remove(r["id"])
                r["status"] = "cancelled"
                self.run_row(o, r)
            else:
                r["status"] = "finished" if t == "agent.finished" else "cancelled"
                p["running"] -= 1
                self.run_row(o, r)
                self.admit_queued(o, r["project"], ev)
            self.drop_idle(o, r["project"])
        elif t == "workflow.started":
            if ev["workflow"] in o.wfs:
                return True
            w = {"id": ev["workflow"], "project": ev["project"],
                 "complexity": ev.get("complexity", "medium"), "requested_at": ts,
                 "started_at": None, "finished_at": None, "billed": False, "overage": False,
                 "tier": o.tier, "status": "held"}
            o.wfs[w["id"]] = w
            if not o.held and not self.must_hold(o):
                self.count(o, w, ts)
            else:
                o.held.append(w["id"])
                self.usage_row(o, w)
                self.decide(ev, "workflow.held", w["project"], w["id"],
                            reason="workflow_quota", position=len(o.held))
        elif t == "workflow.finished":
            w = o.wfs.pop(ev["workflow"], None)
            if w is None:
                return True
            if w["status"] == "held":
                o.held.remove(w["id"])
            w["status"] = ev["status"]
            w["finished_at"] = ts
            self.usage_row(o, w)
        elif t in ("subscription.changed", "subscription.cancelled"):
            tier = ev["tier"] if t == "subscription.changed" else "free"
            if "period_start" in ev and ev["period_start"] > o.start:
                self.begin(o, ev["period_start"],
                           ev.get("period_end", add_months(ev["period_start"], 1)))
                o.anchor = ev["period_end"] if "period_end" in ev else ev["period_start"]
            elif "period_end" in ev and ev["period_end"] > o.start:
                o.end = ev["period_end"]
                o.anchor = ev["period_end"]
                self.note_end(o)
            o.tier = tier
            o.calendar = self.tiers[tier]["calendar"]
            if o.calendar:
                o.anchor = None
            self.roll(o, ts)
            for pid in list(o.projects):
                self.admit_queued(o, pid, ev)
            self.release(o, ev)
        elif t == "pack.purchased":
            o.packs += ev["workflows"]
            self.release(o, ev)
        return True

    def sweep(self, ev):
        """Silent organizations of ev's partition whose period ended CLOSE_GRACE_MS before the
        partition's latest ts move on, by period end then id; their releases are caused by ev."""
        p = self.part[ev["org"]]
        wm = self.watermark[p] = max(self.watermark.get(p, 0), ev["ts"])
        horizon = wm - CLOSE_GRACE_MS
        if horizon < self.next_close.get(p, horizon + 1):
            return
        mine = [o for o in self.orgs.values() if self.part[o.id] == p]
        due = sorted((o for o in mine if o.end <= horizon), key=lambda o: (o.end, o.id.encode()))
        for o in due:
            self.roll(o, horizon)
            self.release(o, ev)
        self.next_close[p] = min(o.end for o in mine)


def decision_id(org, cause, typ, subject):
    """The documented id (proto/README.md): "d-" and the hex XXH3-128 of (org, cause, type,
    subject), each followed by a 0xFF byte."""
    data = b"".join(x.encode() + b"\xff" for x in (org, cause, typ, subject))
    return "d-" + xxhash.xxh3_128(data).hexdigest()


# ---- streams ----------------------------------------------------------------------------

PAID = ["pro", "team", "enterprise", "lifetime", "byo", "payg"]


class AdmissionStream:
    """A seeded stream of admission events for many organizations over ~3 months.

    messages: (key, value) pairs in publish order (per organization ts never decreases);
    events: the decoded events, same order.
    """

    def __init__(self, seed, events, orgs, repeat_pct=3.0):
        self.rng = random.Random(seed)
        self.messages, self.events = [], []
        r = self.rng
        self.orgs = ["acct-%05d" % i for i in range(orgs)]
        state = {o: {"ts": BASE_TS + r.randrange(5 * 86400 * 1000), "runs": [], "wfs": [],
                     "n": 0, "projects": ["p%d" % k for k in range(r.randint(1, 3))]}
                 for o in self.orgs}
        step = (92 * 86400 * 1000) * orgs // max(events, 1)  # spread over ~3 months
        while len(self.messages) < events:
            o = r.choice(self.orgs)
            st = state[o]
            st["ts"] += r.randint(1, 2 * step)
            ev = self._next(o, st)
            if self.events and r.random() * 100 < repeat_pct:
                ev = dict(r.choice(self.events[-2000:]))  # a repeated id: no effect
            self.events.append(ev)
            self.messages.append((ev["org"].encode(), msgpack.packb(ev, use_bin_type=True)))

    def _id(self, o, st):
        st["n"] += 1
        return "%s-e%d-%08x" % (o, st["n"], self.rng.getrandbits(32))

    def _next(self, o, st):
        r = self.rng
        ev = {"v": 1, "id": self._id(o, st), "org": o, "ts": st["ts"]}
        x = r.random()
        if x < 0.32:
            run = "r%d" % st["n"]
            st["runs"].append(run)
            ev.update(type="agent.requested", project=r.choice(st["projects"]), run=run)
            if r.random() < 0.3 and st["wfs"]:
                ev["workflow"] = r.choice(st["wfs"])
        elif x < 0.60 and st["runs"]:
            run = st["runs"].pop(r.randrange(len(st["runs"])))
            ev.update(type="agent.finished" if r.random() < 0.8 else "agent.cancelled", run=run)
        elif x < 0.75:
            wf = "w%d" % st["n"]
            st["wfs"].append(wf)
            ev.update(type="workflow.started", project=r.choice(st["projects"]), workflow=wf,
                      complexity=r.choice(["small", "medium", "large"]))
        elif x < 0.87 and st["wfs"]:
            wf = st["wfs"].pop(r.randrange(len(st["wfs"])))
            ev.update(type="workflow.finished", workflow=wf,
                      status=r.choice(["succeeded", "succeeded", "failed", "cancelled"]))
        elif x < 0.90:
            tier = r.choice(PAID + ["free"])
            ev.update(type="subscription.changed", tier=tier)
            if r.random() < 0.3 and tier not in ("free", "payg", "lifetime"):
                ev["period_start"] = st["ts"]
                ev["period_end"] = add_months(st["ts"], 1)
        elif x < 0.92:
            ev.update(type="subscription.cancelled")
        elif x < 0.95:
            ev.update(type="pack.purchased", workflows=r.choice([10, 50]))
        elif x < 0.955:
            # an unknown run / workflow: counted no-ops
            ev.update(type="agent.finished", run="ghost-%d" % st["n"])
        else:
            ev.update(type="llm.call", provider="openai", model="gpt-4o-mini",
                      input_tokens=r.randint(1, 5000), output_tokens=r.randint(1, 500))
        return ev
