"""billing_stream — the billing acceptance stream and its expected invoices, written out by hand.

Shared by tests/integration/test_billing_month.py and test_billing_crash.py.

The stream: one month (January 2026) of usage for one organization of each tier, plus an
upgrade, a promotion followed over four months, prepaid credits that carry forward, credits that
run out, a budget, a Free organization over its workflow quota, and one whose new subscription
period cuts its Free period short and which cancels later; then, after the month, the events
that close the periods. Every organization has workflows of each complexity, LLM calls
with byo true and false, API calls, storage reports and agent runs. Four billing events are
published a second time later on (a pack, credits, a billed LLM call, API calls — one after its
period closed): duplicates that must change nothing.

The expected figures (EXPECTED_FINALS, EXPECTED_DRAFTS, EXPECTED_ROLLUPS, expected_budget) are
literals worked out by hand from PRODUCT.md, daemon/billing.h, daemon/ledger.h and the shipped
deploy/tiers.ini and deploy/prices.ini — never computed with meterd's formulas. Each line carries
its arithmetic in a comment. Units: µ = micro-USD, n = nano-USD, D = one day = 86,400,000 ms.

Partitions: the input topic has 4 partitions and every message is keyed by its org, placed by
python3-kafka's default partitioner (murmur2, like the Java client). The org names were chosen
so that murmur2(name) % 4 gives this layout (checked by check_partitions):

    0: promo-3, ent-2                     ent-2 silent after January: its periods are closed
                                          by promo-3's events in February..May (+ 1 h rule)
    1: budget-1, pro-1, team-2, upgrade-6 budget-1 silent: closed by team-2's Jan 31 02:00
    2: free-2, freeq-9, life-7, byo-9     byo-9 silent: closed by free-2's Feb 1 00:10
    3: credcarry-2, credout-1, payg-6,    all closed by their own next event
       restart-4

Periods: subscription tiers start at 2026-01-01T00:00Z with subscription.changed carrying
period_start = Jan 1 and period_end = Jan 31 (30 days, 2,592,000,000 ms), except ent-2 and
promo-3 whose periods are the calendar months (no explicit period; they start on the 1st, so
their monthly anniversaries are the 1sts), and restart-4 (free, then pro from Jan 16 with the
period [Jan 16, Feb 15)). Calendar tiers (free, lifetime, payg) have [Jan 1, Feb 1) = 31 days =
2,678,400,000 ms. Only the starts of the periods after [Jan 31, …) are asserted.

LLM costs per call (deploy/prices.ini, USD per 1M tokens; n = tokens × price × 1000):
    C1 anthropic/claude-sonnet-4-5  in 1000 × 3.00 = 3,000,000 n; out 200 × 15.00 = 3,000,000 n
                                                                              → 6,000,000 n
    C2 anthropic/claude-sonnet-4-5  in 500 × 3.00 = 1,500,000; out 100 × 15.00 = 1,500,000;
                                    cache_read 10000 × 0.30 = 3,000,000;
                                    cache_write 2000 × 3.75 = 7,500,000          → 13,500,000 n
    C3 openai/gpt-4o-mini           in 2000 × 0.15 = 300,000; out 500 × 0.60 = 300,000
                                                                                 → 600,000 n
    C4 zai/glm-4.6                  in 1234 × 0.60 = 740,400; out 567 × 2.20 = 1,247,400;
                                    cache_read 1000 × 0.11 = 110,000             → 2,097,800 n
    C5 anthropic/claude-opus-4-5    in 100000 × 5.00 = 500,000,000;
                                    out 20000 × 25.00 = 500,000,000          → 1,000,000,000 n
    C6 openai/gpt-4o-mini           in 1000000 × 0.15 = 150,000,000;
                                    out 100000 × 0.60 = 60,000,000             → 210,000,000 n
    CX acme/mystery-1 (not in prices.ini): unpriced                                    → 0 n
"""

import datetime

import msgpack
from kafka.partitioner.default import murmur2

PARTITIONS = 4
MIN = 60_000
H = 3_600_000
D = 86_400_000

T0 = 1767225600000      # 2026-01-01T00:00:00Z
JAN31 = 1769817600000   # 2026-01-31  = T0 + 30 D
FEB1 = 1769904000000    # 2026-02-01  = T0 + 31 D
FEB28 = 1772236800000   # 2026-02-28  = JAN31 + 28 D
MAR1 = 1772323200000    # 2026-03-01  = FEB1 + 28 D
APR1 = 1775001600000    # 2026-04-01  = MAR1 + 31 D
MAY1 = 1777593600000    # 2026-05-01  = APR1 + 30 D
JUN1 = 1780272000000    # 2026-06-01  = MAY1 + 31 D


def _utc(*a):
    return int(datetime.datetime(*a, tzinfo=datetime.timezone.utc).timestamp()) * 1000


assert (T0, JAN31, FEB1, FEB28, MAR1, APR1, MAY1, JUN1) == tuple(
    _utc(2026, m, d) for m, d in ((1, 1), (1, 31), (2, 1), (2, 28), (3, 1), (4, 1), (5, 1),
                                  (6, 1)))


def jan(day, hour=0, minute=0):
    """2026-01-<day> <hour>:<minute> UTC in ms (day may run past 31 into February)."""
    return T0 + (day - 1) * D + hour * H + minute * MIN


CALLS = {
    "C1": dict(provider="anthropic", model="claude-sonnet-4-5", input_tokens=1000,
               output_tokens=200),
    "C2": dict(provider="anthropic", model="claude-sonnet-4-5", input_tokens=500,
               output_tokens=100, cache_read_tokens=10000, cache_write_tokens=2000),
    "C3": dict(provider="openai", model="gpt-4o-mini", input_tokens=2000, output_tokens=500),
    "C4": dict(provider="zai", model="glm-4.6", input_tokens=1234, output_tokens=567,
               cache_read_tokens=1000),
    "C5": dict(provider="anthropic", model="claude-opus-4-5", input_tokens=100000,
               output_tokens=20000),
    "C6": dict(provider="openai", model="gpt-4o-mini", input_tokens=1000000,
               output_tokens=100000),
    "CX": dict(provider="acme", model="mystery-1", input_tokens=5000, output_tokens=5000),
}
# By hand, see the module docstring.
CALL_NANOS = {"C1": 6_000_000, "C2": 13_500_000, "C3": 600_000, "C4": 2_097_800,
              "C5": 1_000_000_000, "C6": 210_000_000, "CX": 0}

CX3 = ["small", "medium", "large"]
STATUSES = ["succeeded", "succeeded", "failed", "succeeded", "cancelled"]


class Org:
    """One organization's events, ids "<org>/<nnnn>" in creation order."""

    def __init__(self, name, partition):
        self.name = name
        self.partition = partition
        self.events = []
        self.nwf = 0
        self.marks = {}
        self.dups = []  # (publish at, event): an event published again, id and all

    def ev(self, ts, typ, mark=None, **fields):
        e = {"v": 1, "id": "%s/%04d" % (self.name, len(self.events) + 1), "type": typ,
             "org": self.name, "ts": ts}
        e.update(fields)
        self.events.append(e)
        if mark:
            self.marks[mark] = e["id"]
        return e["id"]

    def dup(self, mark, publish_at):
        """Publishes the marked event again, unchanged, where an event at `publish_at` would be:
        a duplicate, which must change nothing."""
        e = next(x for x in self.events if x["id"] == self.marks[mark])
        self.dups.append((publish_at, dict(e)))

    def sub(self, ts, tier, **kw):
        return self.ev(ts, "subscription.changed", tier=tier, **kw)

    def workflow(self, ts, complexity, project=None, finish=True, mark=None):
        """workflow.started at ts (and finished 20 minutes later); returns the start's id."""
        self.nwf += 1
        wid = "w%04d" % self.nwf
        project = project or "p%d" % (1 + self.nwf % 2)
        i = self.ev(ts, "workflow.started", mark=mark, project=project, workflow=wid,
                    complexity=complexity)
        if finish:
            self.ev(ts + 20 * MIN, "workflow.finished", workflow=wid,
                    status=STATUSES[self.nwf % len(STATUSES)])
        return i

    def workflows(self, start, step, complexities, marks=False):
        """One workflow per complexity in the list, every `step` ms from `start`; with marks,
        each start is marked "wf<k>" (k = the workflow's 1-based number in the org)."""
        for k, c in enumerate(complexities):
            n = self.nwf + 1
            self.workflow(start + k * step, c, mark="wf%d" % n if marks else None)

    def llm(self, ts, call, byo, mark=None, project="p1"):
        f = dict(CALLS[call])
        f["byo"] = byo
        return self.ev(ts, "llm.call", mark=mark, project=project, **f)

    def api(self, ts, count, mark=None):
        return self.ev(ts, "api.call", mark=mark, integration="github", count=count)

    def storage(self, ts, nbytes):
        return self.ev(ts, "storage.report", bytes=nbytes)

    def run(self, requested, finished, run, project="p1", mark=None):
        self.ev(requested, "agent.requested", project=project, run=run)
        if finished is not None:
            self.ev(finished, "agent.finished", mark=mark, run=run)


def cycle(n):
    return [CX3[i % 3] for i in range(n)]


def build():
    """Returns {org: Org}; every org's events are in time order."""
    orgs = {}

    def org(name, partition):
        orgs[name] = Org(name, partition)
        return orgs[name]

    # ---- partition 0 ------------------------------------------------------------------
    o = org("promo-3", 0)  # pro on the new_year promotion, calendar-aligned months
    o.sub(T0, "pro", promo="new_year")
    o.workflows(jan(5, 9), D, ["small", "medium", "large"])
    o.llm(jan(8, 10), "C1", False)
    o.llm(jan(8, 11), "C2", True)
    o.api(jan(8, 12), 2)
    o.storage(jan(9), 4_000_000_000)
    o.run(jan(10, 9), jan(10, 10), "r1")
    o.workflow(FEB1 + 9 * D + 9 * H, "small", mark="feb")     # Feb 10 09:00
    o.workflow(MAR1 + 9 * D + 9 * H, "medium", mark="mar")    # Mar 10 09:00
    o.workflow(APR1 + 9 * D + 9 * H, "large", mark="apr")     # Apr 10 09:00
    o.api(MAY1 + D, 1, mark="may")                            # May 2 00:00

    o = org("ent-2", 0)  # enterprise, silent after January
    o.sub(T0, "enterprise")
    o.workflows(jan(2, 9), 6 * H, cycle(20))
    o.llm(jan(8, 10), "C5", False)
    o.llm(jan(8, 11), "C6", True)
    o.api(jan(8, 12), 11)
    o.storage(jan(9), 100_000_000_000)
    o.run(jan(9, 9), jan(9, 17), "r1")

    # ---- partition 1 ------------------------------------------------------------------
    o = org("budget-1", 1)  # pro with a $80 budget, silent after January
    o.sub(T0, "pro", period_start=T0, period_end=JAN31)
    o.ev(T0 + H, "budget.set", mark="budget", monthly_limit_micros=80_000_000)
    o.workflows(jan(2), 5 * H, cycle(100) + ["medium", "medium", "small", "medium", "large"],
                marks=True)
    o.llm(jan(25, 10), "C1", False)
    o.llm(jan(25, 11), "C3", True)
    o.api(jan(25, 12), 3)
    o.storage(jan(26), 8_000_000_000)
    o.run(jan(27, 9), jan(27, 9, 45), "r1")

    o = org("pro-1", 1)
    o.sub(T0, "pro", period_start=T0, period_end=JAN31)
    o.storage(jan(1, 12), 20_000_000_000)
    o.workflows(jan(2), 5 * H, cycle(100) + ["small", "medium", "large", "large"])
    o.llm(jan(25, 10), "C1", False)
    o.llm(jan(25, 11), "C2", True)
    o.llm(jan(25, 12), "C4", False)
    o.api(jan(25, 13), 3)
    o.run(jan(26, 9), jan(26, 11), "r1")
    # r2 runs across the period's end: its agent-ms count in the period it finishes in
    o.run(jan(30, 12), JAN31 + 10 * MIN, "r2", mark="close")  # Jan 31 00:10 closes January

    o = org("team-2", 1)
    o.sub(T0, "team", period_start=T0, period_end=JAN31)
    o.workflows(jan(1, 6), H, cycle(500) + ["medium", "small", "medium"])
    o.llm(jan(22, 10), "C2", True)
    o.llm(jan(22, 11), "C4", False)
    o.api(jan(22, 12), 9)
    o.storage(jan(23), 1_500_000_000)
    o.run(jan(24, 9), jan(24, 9, 6), "r1")
    # Jan 31 02:00: closes team-2's January (its own event) and budget-1's (>= Jan 31 + 1 h)
    o.api(JAN31 + 2 * H, 1, mark="close")

    o = org("upgrade-6", 1)  # pro, then team from Jan 21 00:00
    o.sub(T0, "pro", period_start=T0, period_end=JAN31)
    o.workflows(jan(1, 6), 4 * H, cycle(100) + ["medium", "large"])
    o.run(jan(20, 22), jan(21, 2), "r1")
    o.sub(jan(21), "team", mark="upgrade")
    o.workflows(jan(22, 6), 4 * H, ["small", "medium", "large", "small", "medium"])
    o.llm(jan(24, 10), "C1", False)
    o.llm(jan(24, 11), "C3", True)
    o.api(jan(24, 12), 6)
    o.storage(jan(25), 2_000_000_000)
    o.api(JAN31 + 20 * MIN, 1, mark="close")

    # ---- partition 2 ------------------------------------------------------------------
    o = org("free-2", 2)
    o.storage(jan(1, 2), 1_000_000_000)
    o.workflows(jan(3, 9), D, ["small", "medium", "large"])
    o.llm(jan(3, 10), "C1", False)
    o.llm(jan(4, 10), "C3", True)
    o.api(jan(5, 10), 5)
    o.run(jan(6, 9), jan(6, 10, 30), "r1")
    o.storage(jan(11), 5_000_000_000)
    # Feb 1 00:10: closes free-2's January and, >= Jan 31 + 1 h, byo-9's
    o.api(FEB1 + 10 * MIN, 1, mark="close")

    o = org("freeq-9", 2)  # free, 7 workflows: 5 counted, 2 held
    o.storage(jan(2), 500_000_000)
    for k, c in enumerate(["small", "medium", "large", "small", "medium", "large", "small"]):
        o.workflow(jan(2, 10 + k), c, finish=k < 5, mark="wf%d" % (k + 1))
    o.llm(jan(3, 10), "C3", False)
    o.llm(jan(3, 11), "C1", True)
    o.api(jan(3, 12), 2)
    o.run(jan(4, 9), jan(4, 10), "r1")
    o.api(FEB1 + 20 * MIN, 1, mark="close")

    o = org("life-7", 2)  # lifetime: $299 once; 50 workflows + a pack of 10
    o.sub(T0, "lifetime")
    o.storage(jan(2), 10_000_000_000)
    o.workflows(jan(2, 6), 4 * H, cycle(50) + ["large", "small"])   # ends Jan 10 18:00
    o.ev(jan(11), "pack.purchased", mark="pack", workflows=10)
    o.dup("pack", jan(11, 12))  # a second pack would make #61 and #62 fit
    o.workflows(jan(11, 6), 4 * H, cycle(8) + ["medium", "large"])   # ends Jan 12 18:00
    o.llm(jan(13, 10), "C1", False)
    o.llm(jan(13, 11), "C2", True)
    o.api(jan(13, 12), 7)
    o.run(jan(14, 9), jan(14, 13), "r1")
    o.run(jan(14, 9, 30), jan(14, 10), "r2", project="p2")
    o.storage(jan(16), 60_000_000_000)
    o.api(FEB1 + 30 * MIN, 1, mark="close")

    o = org("byo-9", 2)  # byo, silent after January
    o.sub(T0, "byo", period_start=T0, period_end=JAN31)
    o.workflows(jan(3, 9), D, ["small", "medium", "large", "small", "medium", "large"])
    o.llm(jan(10, 10), "C1", False)
    o.llm(jan(10, 11), "C2", True)
    o.llm(jan(10, 12), "C4", False)
    o.api(jan(11, 10), 4)
    o.storage(jan(12), 3_000_000_000)
    o.run(jan(13, 9), jan(13, 11), "r1")

    # ---- partition 3 ------------------------------------------------------------------
    o = org("credcarry-2", 3)  # pro with $80 of credits: more than one month
    o.sub(T0, "pro", period_start=T0, period_end=JAN31)
    o.ev(T0 + H, "credits.added", mark="credits", amount_micros=80_000_000)
    o.dup("credits", FEB1)  # in [Jan 31, Feb 28): applied again it would leave $110 there
    o.workflows(jan(3, 9), D, ["small", "medium", "large", "small", "medium", "large"])
    o.llm(jan(10, 10), "C1", False)
    o.llm(jan(10, 11), "C2", True)
    o.api(jan(10, 12), 2)
    o.storage(jan(11), 1_000_000_000)
    o.run(jan(12, 9), jan(12, 10), "r1")
    o.api(JAN31 + 10 * MIN, 1, mark="close")              # closes January
    o.workflow(JAN31 + 10 * D + 9 * H, "small")            # Feb 10 09:00
    o.api(FEB28 + 10 * MIN, 1, mark="close2")             # closes [Jan 31, Feb 28)

    o = org("credout-1", 3)  # payg with $30 of credits: run out by the third workflow
    o.sub(T0, "payg")
    o.ev(T0 + H, "credits.added", amount_micros=30_000_000)
    o.llm(jan(2, 10), "C2", True)
    o.workflows(jan(3, 10), D, ["small", "small", "small"], marks=True)
    o.api(jan(6, 10), 10)
    o.workflows(jan(7, 10), D, ["medium", "large"])
    o.llm(jan(9, 10), "C1", False)
    o.run(jan(10, 9), jan(10, 10), "r1")
    o.storage(jan(21), 1_000_000_000)
    o.llm(FEB1 + 10 * MIN, "C3", True, mark="close")

    o = org("payg-6", 3)
    o.sub(T0, "payg")
    o.storage(jan(2), 10_000_000_000)
    o.workflows(jan(3, 9), D, ["medium", "small", "large", "small", "medium", "small"])
    # concurrency 1: r2 waits for r1
    o.ev(jan(5, 10), "agent.requested", project="p1", run="r1")
    o.ev(jan(5, 10, 30), "agent.requested", project="p1", run="r2")
    o.ev(jan(5, 11), "agent.finished", run="r1")
    o.ev(jan(5, 13), "agent.finished", run="r2")
    o.llm(jan(9, 10), "C5", False, mark="c5")
    o.dup("c5", jan(9, 10, 30))
    o.llm(jan(9, 11), "C5", False)
    o.llm(jan(9, 12), "C6", False)
    o.llm(jan(9, 13), "C4", False)
    o.llm(jan(9, 14), "C1", False)
    o.llm(jan(9, 15), "C2", True)
    o.llm(jan(9, 16), "CX", False)
    o.api(jan(10, 10), 1000, mark="api1000")
    o.dup("api1000", FEB1 + 30 * MIN)  # after January closed
    o.api(jan(10, 11), 200)
    o.api(jan(10, 12), 35)
    o.storage(jan(17), 4_000_000_000)
    o.llm(FEB1 + 20 * MIN, "C3", True, mark="close")

    o = org("restart-4", 3)  # free; pro from Jan 16 with a new period; cancelled Feb 5
    o.storage(jan(1, 2), 3_000_000_000)
    o.workflows(jan(3, 9), D, ["small", "medium"])
    o.llm(jan(5, 10), "C3", False)
    o.api(jan(5, 11), 1)
    # a new subscription period from Jan 16 cuts the free one short
    o.sub(jan(16), "pro", period_start=jan(16), period_end=jan(46), mark="restart")
    o.workflows(jan(17, 9), D, ["large", "small", "medium"])
    o.llm(jan(20, 10), "C1", True)
    o.llm(jan(20, 11), "C4", False)
    o.api(jan(21, 10), 4)
    o.run(jan(22, 9), jan(22, 12), "r1")
    o.ev(jan(36), "subscription.cancelled", mark="cancel")  # Feb 5 00:00: back to free
    o.workflow(jan(37, 9), "large")                         # the 4th of free's 5
    o.api(jan(46, 0, 10), 1, mark="close")                  # Feb 15 00:10

    for o in orgs.values():
        o.events.sort(key=lambda e: e["ts"])  # stable: creation order breaks no tie here
        ts = [e["ts"] for e in o.events]
        assert len(set(ts)) == len(ts), "%s has two events at one instant" % o.name
    return orgs


def partition_of(org):
    return (murmur2(org.encode()) & 0x7fffffff) % PARTITIONS


def check_partitions(orgs):
    for o in orgs.values():
        assert partition_of(o.name) == o.partition, "%s lands on partition %d, not %d" % (
            o.name, partition_of(o.name), o.partition)


def pack(ev):
    return msgpack.packb(ev, use_bin_type=True)


def messages(orgs):
    """(key, value) pairs in time order (ties: org name), so that every partition is in order;
    duplicates where their `publish_at` puts them."""
    evs = [((e["ts"], e["org"], e["id"]), e) for o in orgs.values() for e in o.events]
    evs += [((at, e["org"], e["id"] + "~dup"), e) for o in orgs.values() for at, e in o.dups]
    evs.sort(key=lambda x: x[0])
    return [(e["org"].encode(), pack(e)) for _, e in evs]


def duplicates(orgs):
    return sum(len(o.dups) for o in orgs.values())


def mark(orgs, org, name):
    return orgs[org].marks[name]


# ---- expected final invoices ----------------------------------------------------------------
#
# One entry per final invoice: (org, period_start, period_end, subtotal, credits, total,
# lines), each line (kind, detail, quantity_raw, quantity_scale, unit_price_micros,
# amount_cents) in line_no order. amount = round_half_up(raw × unit / (scale × 10^4)).
# nominal_end = period_end except in CUT_SHORT.
#
# Scales: base_fee L = the period's length in ms; storage 10^9 × L; llm 10^9; credits 100.
L30 = 2_592_000_000   # 30 D: [Jan 1, Jan 31), [Apr 1, May 1)
L31 = 2_678_400_000   # 31 D: [Jan 1, Feb 1), [Mar 1, Apr 1)
L28 = 2_419_200_000   # 28 D: [Feb 1, Mar 1), [Jan 31, Feb 28)
GB_L31 = 10**9 * L31  # 2_678_400_000_000_000_000

EXPECTED_FINALS = [
    # free-2, free, [Jan 1, Feb 1): only storage beyond 2 GB: 5 GB − 2 GB = 3 GB from Jan 11 to
    # Feb 1 (21 D = 1,814,400,000 ms); the 1 GB before is under the limit.
    ("free-2", T0, FEB1, 20, 0, 20, [
        # 3e9 B × 1,814,400,000 ms = 5.4432e18 B·ms; / (1e9 × 31 D) = 2.032258 GB-months
        # × $0.10 = 100,000 µ → 20.32 ¢ → 20
        ("storage", "", 5_443_200_000_000_000_000, GB_L31, 100_000, 20),
    ]),
    # freeq-9, free: 5 workflows counted (free's quota), 2 held; 0.5 GB under the limit; no
    # line at all.
    ("freeq-9", T0, FEB1, 0, 0, 0, []),
    # life-7, lifetime from Jan 1 00:00: $299 once; base fee 0 → no base_fee line.
    ("life-7", T0, FEB1, 34452, 0, 34452, [
        ("one_time_fee", "lifetime", 1, 1, 299_000_000, 29900),          # $299 → 29,900 ¢
        # quota 50: #51 large, #52 small over it; pack (+10) on Jan 11 → quota 60: #53..#60 in,
        # #61 medium, #62 large over it. First appearance: large, small, medium.
        ("workflow_overage", "large", 2, 1, 15_000_000, 3000),           # 2 × $15
        ("workflow_overage", "small", 1, 1, 5_000_000, 500),             # 1 × $5
        ("workflow_overage", "medium", 1, 1, 10_000_000, 1000),          # 1 × $10
        # 60 GB − 50 GB = 10 GB from Jan 16 to Feb 1 (16 D = 1,382,400,000 ms):
        # 10e9 × 1,382,400,000 = 1.3824e19 B·ms / 2.6784e18 = 5.16129 GB-months × $0.10
        # = 51.61 ¢ → 52
        ("storage", "", 13_824_000_000_000_000_000, GB_L31, 100_000, 52),
    ]),  # 29900 + 3000 + 500 + 1000 + 52 = 34452
    # byo-9, byo [Jan 1, Jan 31): $19 flat; LLM never billed.
    ("byo-9", T0, JAN31, 1900, 0, 1900, [
        ("base_fee", "byo", L30, L30, 19_000_000, 1900),                 # 30 of 30 D × $19
    ]),
    # budget-1, pro [Jan 1, Jan 31): overage #101 medium, #102 medium, #103 small, #104 medium,
    # #105 large.
    ("budget-1", T0, JAN31, 10000, 0, 10000, [
        ("base_fee", "pro", L30, L30, 50_000_000, 5000),                 # 30/30 × $50
        ("workflow_overage", "medium", 3, 1, 10_000_000, 3000),          # 3 × $10
        ("workflow_overage", "small", 1, 1, 5_000_000, 500),             # 1 × $5
        ("workflow_overage", "large", 1, 1, 15_000_000, 1500),           # 1 × $15
    ]),  # 5000 + 3000 + 500 + 1500
    # pro-1, pro [Jan 1, Jan 31): 104 workflows, #101 small, #102 medium, #103-#104 large.
    ("pro-1", T0, JAN31, 9500, 0, 9500, [
        ("base_fee", "pro", L30, L30, 50_000_000, 5000),                 # 30/30 × $50
        ("workflow_overage", "small", 1, 1, 5_000_000, 500),             # 1 × $5
        ("workflow_overage", "medium", 1, 1, 10_000_000, 1000),          # 1 × $10
        ("workflow_overage", "large", 2, 1, 15_000_000, 3000),           # 2 × $15
    ]),
    # team-2, team [Jan 1, Jan 31): 503 workflows, #501 medium, #502 small, #503 medium.
    ("team-2", T0, JAN31, 17500, 0, 17500, [
        ("base_fee", "team", L30, L30, 150_000_000, 15000),              # 30/30 × $150
        ("workflow_overage", "medium", 2, 1, 10_000_000, 2000),          # 2 × $10
        ("workflow_overage", "small", 1, 1, 5_000_000, 500),             # 1 × $5
    ]),
    # upgrade-6: pro [Jan 1, Jan 21 00:00) then team [Jan 21, Jan 31). 102 workflows under pro
    # (#101 medium, #102 large over 100), then 5 under team's 500.
    ("upgrade-6", T0, JAN31, 10833, 0, 10833, [
        # pro 20 of 30 D: 50,000,000 µ × 1,728,000,000 / 2,592,000,000 ms = $33.333… → 3333 ¢
        ("base_fee", "pro", 1_728_000_000, L30, 50_000_000, 3333),
        # team 10 of 30 D: 150,000,000 µ × 864,000,000 / 2,592,000,000 ms = $50 → 5000 ¢
        ("base_fee", "team", 864_000_000, L30, 150_000_000, 5000),
        ("workflow_overage", "medium", 1, 1, 10_000_000, 1000),
        ("workflow_overage", "large", 1, 1, 15_000_000, 1500),
    ]),  # 3333 + 5000 + 1000 + 1500
    # promo-3, pro + new_year: month 1 $0.59, months 2-3 $12.99, month 4 pro's $50.
    ("promo-3", T0, FEB1, 59, 0, 59, [
        ("base_fee", "pro", L31, L31, 590_000, 59),                      # month 1: $0.59
    ]),
    ("promo-3", FEB1, MAR1, 1299, 0, 1299, [
        ("base_fee", "pro", L28, L28, 12_990_000, 1299),                 # month 2: $12.99
    ]),
    ("promo-3", MAR1, APR1, 1299, 0, 1299, [
        ("base_fee", "pro", L31, L31, 12_990_000, 1299),                 # month 3: $12.99
    ]),
    ("promo-3", APR1, MAY1, 5000, 0, 5000, [
        ("base_fee", "pro", L30, L30, 50_000_000, 5000),                 # month 4: $50
    ]),
    # ent-2, enterprise $1000 per month, silent after January: four periods closed by promo-3's
    # events (each >= period end + 1 h in partition 0).
    ("ent-2", T0, FEB1, 100000, 0, 100000, [
        ("base_fee", "enterprise", L31, L31, 1_000_000_000, 100000),
    ]),
    ("ent-2", FEB1, MAR1, 100000, 0, 100000, [
        ("base_fee", "enterprise", L28, L28, 1_000_000_000, 100000),
    ]),
    ("ent-2", MAR1, APR1, 100000, 0, 100000, [
        ("base_fee", "enterprise", L31, L31, 1_000_000_000, 100000),
    ]),
    ("ent-2", APR1, MAY1, 100000, 0, 100000, [
        ("base_fee", "enterprise", L30, L30, 1_000_000_000, 100000),
    ]),
    # credcarry-2, pro, $80 credits: January uses $50 of them, $30 carry into [Jan 31, Feb 28).
    ("credcarry-2", T0, JAN31, 5000, 5000, 0, [
        ("base_fee", "pro", L30, L30, 50_000_000, 5000),
        ("credits", "", 5000, 100, -1_000_000, -5000),   # min(5000 ¢, 8000 ¢ balance)
    ]),
    ("credcarry-2", JAN31, FEB28, 5000, 3000, 2000, [
        ("base_fee", "pro", L28, L28, 50_000_000, 5000),                 # 28/28 D × $50
        ("credits", "", 3000, 100, -1_000_000, -3000),   # the $30 left: min(5000, 3000)
    ]),
    # credout-1, payg, $30 credits: every workflow billed at payg prices.
    ("credout-1", T0, FEB1, 5757, 3000, 2757, [
        ("workflow_overage", "small", 3, 1, 10_000_000, 3000),           # 3 × $10
        ("workflow_overage", "medium", 1, 1, 12_500_000, 1250),          # 1 × $12.50
        ("workflow_overage", "large", 1, 1, 15_000_000, 1500),           # 1 × $15
        # C1 6,000,000 n × 1,200,000 µ / (1e9 × 1e4) = 0.72 ¢ → 1 (C2 was byo)
        ("llm", "", 6_000_000, 10**9, 1_200_000, 1),
        ("api_calls", "", 10, 1, 1_000, 1),                              # 10 × $0.001 = 1 ¢
        # 1 GB from Jan 21 to Feb 1 (11 D = 950,400,000 ms): 9.504e17 / 2.6784e18
        # = 0.354839 GB-months × $0.15 = 5.32 ¢ → 5
        ("storage", "", 950_400_000_000_000_000, GB_L31, 150_000, 5),
        ("credits", "", 3000, 100, -1_000_000, -3000),   # the whole $30
    ]),  # 3000 + 1250 + 1500 + 1 + 1 + 5 = 5757; − 3000 = 2757
    # payg-6, payg [Jan 1, Feb 1).
    ("payg-6", T0, FEB1, 7492, 0, 7492, [
        # first appearance: medium (Jan 3), small (Jan 4), large (Jan 5)
        ("workflow_overage", "medium", 2, 1, 12_500_000, 2500),          # 2 × $12.50
        ("workflow_overage", "small", 3, 1, 10_000_000, 3000),           # 3 × $10
        ("workflow_overage", "large", 1, 1, 15_000_000, 1500),           # 1 × $15
        # byo false: C5 + C5 + C6 + C4 + C1 = 1e9 + 1e9 + 210,000,000 + 2,097,800 + 6,000,000
        # = 2,218,097,800 n (C2 byo, CX unpriced); × 1.20 = $2.66171736 → 266.17 ¢ → 266
        ("llm", "", 2_218_097_800, 10**9, 1_200_000, 266),
        # 1000 + 200 + 35 = 1235 calls × $0.001 = 123.5 ¢ → 124 (half up)
        ("api_calls", "", 1235, 1, 1_000, 124),
        # 10 GB Jan 2 → Jan 17 (15 D) + 4 GB Jan 17 → Feb 1 (15 D) = 210e9 × 86,400,000
        # = 1.8144e19 B·ms / 2.6784e18 = 6.774194 GB-months × $0.15 = 101.61 ¢ → 102
        ("storage", "", 18_144_000_000_000_000_000, GB_L31, 150_000, 102),
    ]),  # 2500 + 3000 + 1500 + 266 + 124 + 102 = 7492
    # restart-4, free [Jan 1, …) cut short on Jan 16 00:00 by pro's new period: its actual end
    # is Jan 16, its nominal end still Feb 1, and storage prorates over the nominal 31 D.
    ("restart-4", T0, jan(16), 5, 0, 5, [
        # 3 GB − 2 GB = 1 GB from Jan 1 02:00 to Jan 16 00:00 (15 D − 2 h = 1,288,800,000 ms)
        # = 1.2888e18 B·ms / 2.6784e18 = 0.481183 GB-months × $0.10 = 4.81 ¢ → 5
        ("storage", "", 1_288_800_000_000_000_000, GB_L31, 100_000, 5),
    ]),
    # restart-4, pro [Jan 16, Feb 15) (30 D), cancelled on Feb 5 00:00: free for the rest.
    ("restart-4", jan(16), jan(46), 3336, 0, 3336, [
        # pro 20 of 30 D: 50,000,000 µ × 1,728,000,000 / 2,592,000,000 = $33.333… → 3333 ¢
        # (free's fee is 0: no line)
        ("base_fee", "pro", 1_728_000_000, L30, 50_000_000, 3333),
        # back on free's 2 GB limit from Feb 5: 1 GB × 10 D (864,000,000 ms) = 8.64e17 B·ms
        # / (1e9 × 2,592,000,000) = 0.333333 GB-months × $0.10 = 3.33 ¢ → 3
        ("storage", "", 864_000_000_000_000_000, 10**9 * L30, 100_000, 3),
    ]),  # 3333 + 3
]

# Final invoices whose period a new subscription period cut short: id → nominal_end.
CUT_SHORT = {"restart-4/%d" % T0: FEB1}

# The open period of every organization at the end: (org, period_start, subtotal, credits,
# total). Drafts bill the committed base fee of the whole period; usage-only tiers have only
# minutes of storage (< 0.5 ¢) in them.
EXPECTED_DRAFTS = [
    ("free-2", FEB1, 0, 0, 0),
    ("freeq-9", FEB1, 0, 0, 0),
    ("life-7", FEB1, 0, 0, 0),        # no second one-time fee
    ("byo-9", JAN31, 1900, 0, 1900),
    ("budget-1", JAN31, 5000, 0, 5000),
    ("pro-1", JAN31, 5000, 0, 5000),
    ("team-2", JAN31, 15000, 0, 15000),
    ("upgrade-6", JAN31, 15000, 0, 15000),  # team for the whole period now
    ("promo-3", MAY1, 5000, 0, 5000),
    ("ent-2", MAY1, 100000, 0, 100000),
    ("credcarry-2", FEB28, 5000, 0, 5000),  # no credits left
    ("credout-1", FEB1, 0, 0, 0),
    ("payg-6", FEB1, 0, 0, 0),
    ("restart-4", jan(46), 0, 0, 0),  # free again: minutes of 1 GB over the limit
]

# Tier stretches (subscriptions table) of some final periods: (org, period_start) →
# [(started_at, ended_at, tier, promo, fee_micros)].
EXPECTED_STRETCHES = {
    ("upgrade-6", T0): [(T0, jan(21), "pro", "", 50_000_000),
                        (jan(21), JAN31, "team", "", 150_000_000)],
    ("promo-3", T0): [(T0, FEB1, "pro", "new_year", 590_000)],
    ("promo-3", FEB1): [(FEB1, MAR1, "pro", "new_year", 12_990_000)],
    ("promo-3", MAR1): [(MAR1, APR1, "pro", "new_year", 12_990_000)],
    ("promo-3", APR1): [(APR1, MAY1, "pro", "new_year", 50_000_000)],
    ("life-7", T0): [(T0, FEB1, "lifetime", "", 0)],
    ("restart-4", T0): [(T0, jan(16), "free", "", 0)],
    ("restart-4", jan(16)): [(jan(16), jan(36), "pro", "", 50_000_000),
                             (jan(36), jan(46), "free", "", 0)],
}

# usage_rollups of every final period, by hand from the stream above. Meters: workflows,
# overage_workflows, held_workflows, agent_ms, llm_calls, llm_cost_nanos (byo included),
# llm_billed_nanos, api_calls, storage_byte_ms (∫ bytes dt of the whole footprint).
METERS = ["workflows", "overage_workflows", "held_workflows", "agent_ms", "llm_calls",
          "llm_cost_nanos", "llm_billed_nanos", "api_calls", "storage_byte_ms"]


def _r(wf, over, held, agent, calls, cost, billed, api, storage):
    return dict(zip(METERS, (wf, over, held, agent, calls, cost, billed, api, storage)))


EXPECTED_ROLLUPS = {
    # agent r1 1 h 30; C1 6,000,000 + C3 600,000; 1e9 × (10 D − 2 h = 856,800,000 ms)
    # + 5e9 × 21 D (1,814,400,000) = 8.568e17 + 9.072e18
    ("free-2", T0): _r(3, 0, 0, 5_400_000, 2, 6_600_000, 0, 5, 9_928_800_000_000_000_000),
    # 5 counted, 2 held; 1 h; C3 + C1; 5e8 × 30 D (Jan 2 → Feb 1, 2,592,000,000)
    ("freeq-9", T0): _r(5, 0, 2, 3_600_000, 2, 6_600_000, 0, 2, 1_296_000_000_000_000_000),
    # 4 h + 30 min; C1 + C2 = 19,500,000; 10e9 × 14 D (1,209,600,000) + 60e9 × 16 D
    # (1,382,400,000) = 1.2096e19 + 8.2944e19
    ("life-7", T0): _r(62, 4, 0, 16_200_000, 2, 19_500_000, 0, 7, 95_040_000_000_000_000_000),
    # 2 h; C1 + C2 + C4 = 21,597,800; 3e9 × 19 D (1,641,600,000)
    ("byo-9", T0): _r(6, 0, 0, 7_200_000, 3, 21_597_800, 0, 4, 4_924_800_000_000_000_000),
    # 45 min; C1 + C3; 8e9 × 5 D (432,000,000)
    ("budget-1", T0): _r(105, 5, 0, 2_700_000, 2, 6_600_000, 0, 3, 3_456_000_000_000_000_000),
    # r1 2 h (r2 ends in the next period); C1 + C2 + C4; 20e9 × 29.5 D (2,548,800,000)
    ("pro-1", T0): _r(104, 4, 0, 7_200_000, 3, 21_597_800, 0, 3, 50_976_000_000_000_000_000),
    # 6 min; C2 + C4 = 15,597,800; 1.5e9 × 8 D (691,200,000)
    ("team-2", T0): _r(503, 3, 0, 360_000, 2, 15_597_800, 0, 9, 1_036_800_000_000_000_000),
    # 4 h; C1 + C3; 2e9 × 6 D (518,400,000)
    ("upgrade-6", T0): _r(107, 2, 0, 14_400_000, 2, 6_600_000, 0, 6, 1_036_800_000_000_000_000),
    # 1 h; C1 + C2; 4e9 × 23 D (1,987,200,000)
    ("promo-3", T0): _r(3, 0, 0, 3_600_000, 2, 19_500_000, 0, 2, 7_948_800_000_000_000_000),
    ("promo-3", FEB1): _r(1, 0, 0, 0, 0, 0, 0, 0, 9_676_800_000_000_000_000),    # 4e9 × 28 D
    ("promo-3", MAR1): _r(1, 0, 0, 0, 0, 0, 0, 0, 10_713_600_000_000_000_000),   # 4e9 × 31 D
    ("promo-3", APR1): _r(1, 0, 0, 0, 0, 0, 0, 0, 10_368_000_000_000_000_000),   # 4e9 × 30 D
    # 8 h; C5 1e9 + C6 210,000,000; 100e9 × 23 D
    ("ent-2", T0): _r(20, 0, 0, 28_800_000, 2, 1_210_000_000, 0, 11,
                      198_720_000_000_000_000_000),
    ("ent-2", FEB1): _r(0, 0, 0, 0, 0, 0, 0, 0, 241_920_000_000_000_000_000),    # 100e9 × 28 D
    ("ent-2", MAR1): _r(0, 0, 0, 0, 0, 0, 0, 0, 267_840_000_000_000_000_000),    # 100e9 × 31 D
    ("ent-2", APR1): _r(0, 0, 0, 0, 0, 0, 0, 0, 259_200_000_000_000_000_000),    # 100e9 × 30 D
    # 1 h; C1 + C2; 1e9 × 20 D (1,728,000,000)
    ("credcarry-2", T0): _r(6, 0, 0, 3_600_000, 2, 19_500_000, 0, 2,
                            1_728_000_000_000_000_000),
    # the Jan 31 00:10 api.call and the Feb 10 workflow; 1e9 × 28 D
    ("credcarry-2", JAN31): _r(1, 0, 0, 0, 0, 0, 0, 1, 2_419_200_000_000_000_000),
    # payg: every workflow is over quota 0; C2 (byo) + C1 billed; 1e9 × 11 D (950,400,000)
    ("credout-1", T0): _r(5, 5, 0, 3_600_000, 2, 19_500_000, 6_000_000, 10,
                          950_400_000_000_000_000),
    # r1 11:00-10:00 = 1 h, r2 admitted when r1 finished 11:00, to 13:00 = 2 h; 7 calls:
    # billed 2,218,097,800 + C2 13,500,000 (byo) + CX 0; 210e9 × 1 D
    ("payg-6", T0): _r(6, 6, 0, 10_800_000, 7, 2_231_597_800, 2_218_097_800, 1235,
                       18_144_000_000_000_000_000),
    # 2 workflows; C3; 3e9 × 1,288,800,000 ms
    ("restart-4", T0): _r(2, 0, 0, 0, 1, 600_000, 0, 1, 3_866_400_000_000_000_000),
    # 3 + 1 workflows; r1 3 h; C1 (byo) + C4 = 8,097,800; 3e9 × 30 D (2,592,000,000)
    ("restart-4", jan(16)): _r(4, 0, 0, 10_800_000, 2, 8_097_800, 0, 4,
                               7_776_000_000_000_000_000),
}


# Some meters of open periods (drafts): what moved into the next period.
EXPECTED_DRAFT_ROLLUPS = {
    # r2 (requested Jan 30 12:00) finished Jan 31 00:10, after January closed: 12 h 10 min
    # = 43,800,000 ms count in [Jan 31, …)
    ("pro-1", JAN31): {"agent_ms": 43_800_000, "workflows": 0},
    # the two held workflows released and counted in February by the Feb 1 00:20 event
    ("freeq-9", FEB1): {"workflows": 2, "held_workflows": 0, "api_calls": 1},
    # the Feb 5 workflow was counted in [Jan 16, Feb 15), nothing since but the closing call
    ("restart-4", jan(46)): {"workflows": 0, "api_calls": 1},
}


def self_check(orgs):
    """Guards the hand-written rollups against an edit of the stream: the plain counts of each
    closed period (LLM calls and their hand-priced cost, API calls, workflows started = counted
    + held) recounted from the events themselves."""
    ends = {(f[0], f[1]): f[2] for f in EXPECTED_FINALS}
    assert set(ends) == set(EXPECTED_ROLLUPS), "rollups and finals name different periods"
    for (org, start), want in EXPECTED_ROLLUPS.items():
        evs = [e for e in orgs[org].events if start <= e["ts"] < ends[(org, start)]]
        calls = [e for e in evs if e["type"] == "llm.call"]
        got = (len(calls),
               sum(CALL_NANOS[k] for e in calls for k, c in CALLS.items()
                   if all(e.get(f) == v for f, v in c.items())),
               sum(e["count"] for e in evs if e["type"] == "api.call"),
               sum(1 for e in evs if e["type"] == "workflow.started"))
        assert got == (want["llm_calls"], want["llm_cost_nanos"], want["api_calls"],
                       want["workflows"] + want["held_workflows"]), (org, start, got)


def expected_budget(orgs):
    """The budget events, by hand: (type, org, reason or threshold, period_start, spend_micros,
    limit_micros, cause, ts). Spend = the draft's subtotal (base fee committed at once) × 10^4."""
    m = lambda o, k: mark(orgs, o, k)  # noqa: E731
    return [
        # freeq-9's 5th workflow reaches free's quota of 5 (no budget: spend 0, limit 0)
        ("budget.exceeded", "freeq-9", "workflow_quota", T0, 0, 0, m("freeq-9", "wf5"),
         jan(2, 14)),
        # budget.set $80 while pro's $50 is committed: 50e6 × 100 >= 80e6 × 50 → warning 50
        # (80: 50e6 × 100 < 80e6 × 80 = 6.4e9)
        ("budget.warning", "budget-1", 50, T0, 50_000_000, 80_000_000, m("budget-1", "budget"),
         T0 + H),
        # #101 medium → $60; #102 medium → $70 >= $64 (80 %)
        ("budget.warning", "budget-1", 80, T0, 70_000_000, 80_000_000, m("budget-1", "wf102"),
         jan(2) + 101 * 5 * H),
        # #103 small → $75; #104 medium → $85 >= $80
        ("budget.exceeded", "budget-1", "budget", T0, 85_000_000, 80_000_000,
         m("budget-1", "wf104"), jan(2) + 103 * 5 * H),
        # [Jan 31, Feb 28) opened by the sweep at team-2's Jan 31 02:00 event (budget-1 silent):
        # pro's $50 committed again → warning 50 of the new period, caused by team-2's event
        ("budget.warning", "budget-1", 50, JAN31, 50_000_000, 80_000_000, m("team-2", "close"),
         JAN31 + 2 * H),
        # credcarry-2's [Jan 31, Feb 28) opens with $80 − $50 = $30 of credits and $50 committed
        ("budget.exceeded", "credcarry-2", "credits", JAN31, 50_000_000, 30_000_000,
         m("credcarry-2", "close"), JAN31 + 10 * MIN),
        # credout-1's third small payg workflow: 3 × $10 = $30 >= the $30 balance
        ("budget.exceeded", "credout-1", "credits", T0, 30_000_000, 30_000_000,
         m("credout-1", "wf3"), jan(5, 10)),
    ]
