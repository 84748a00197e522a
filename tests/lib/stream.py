"""stream — seeded synthetic usage streams and an independent computation of what meterd must
store for them.

The expected cost is computed here from the shipped price table with Python's Decimal, not with
meterd's integer formula: cost in nano-USD of one call = sum(tokens x USD-per-1M) x 1000, rounded
half up to a whole nano-USD per call (PRODUCT.md: money is integers; proto/README.md: per-call
rounding).
"""

import configparser
import random
from decimal import Decimal, ROUND_HALF_UP

import msgpack

from meterlab import PRICES

HOUR_MS = 3600 * 1000
BASE_TS = 1767225600000  # 2026-01-01T00:00:00Z


def load_prices(path=PRICES):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    with open(path) as f:
        cp.read_file(f)
    prices = {}
    for sec in cp.sections():
        provider, model = sec.split("/", 1)
        prices[(provider, model)] = {k: Decimal(cp[sec][k]) for k in
                                     ("input", "output", "cache_read", "cache_write")}
    return prices


def cost_nanos(prices, ev):
    p = prices.get((ev["provider"], ev["model"]))
    if p is None:
        return 0, True
    usd_per_m = (ev["input_tokens"] * p["input"] + ev["output_tokens"] * p["output"] +
                 ev.get("cache_read_tokens", 0) * p["cache_read"] +
                 ev.get("cache_write_tokens", 0) * p["cache_write"])
    return int((usd_per_m * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)), False


def pack(ev):
    return msgpack.packb(ev, use_bin_type=True)


class Stream:
    """A seeded stream of llm.call events with repeated ids and poison messages.

    messages: list of (key, value) in publish order.
    poison: list of (value, set of acceptable dead-letter error names).
    expected_rows: {(org, project, provider, model, hour_ms, billable): [calls, in, out, cr, cw,
                    cost_nanos, unpriced_calls]}
    """

    POISON_KINDS = ["truncated", "wrong_type", "missing_field", "oversize", "absurd_count",
                    "unknown_type", "bad_version", "not_map", "bad_utf8", "negative",
                    "key_mismatch", "garbage", "huge_str_header", "deep_nesting"]

    OTHER_TYPES = ["workflow.started", "workflow.finished", "agent.requested", "agent.finished",
                   "agent.cancelled", "api.call", "storage.report", "subscription.changed",
                   "subscription.cancelled", "credits.added", "pack.purchased", "budget.set"]

    def __init__(self, seed, events, orgs, repeat_pct=5.0, poison_pct=1.0, hours=48,
                 unknown_model_pct=2.0, other_pct=0.0):
        self.seed = seed
        self.rng = random.Random(seed)
        self.prices = load_prices()
        self.models = sorted(self.prices)
        self.orgs = ["org-%04d" % i for i in range(orgs)]
        self.projects = {o: ["proj-%d" % j for j in range(self.rng.randint(1, 4))]
                         for o in self.orgs}
        self.messages = []
        self.poison = []
        self.expected_rows = {}
        self.applied_ids = set()
        self.duplicates = 0
        self.other_counts = {}
        self._gen(events, repeat_pct, poison_pct, hours, unknown_model_pct, other_pct)

    def _uuid(self):
        return "%08x-%04x-4%03x-%04x-%012x" % (
            self.rng.getrandbits(32), self.rng.getrandbits(16), self.rng.getrandbits(12),
            0x8000 | self.rng.getrandbits(14), self.rng.getrandbits(48))

    def _event(self, org, hours, unknown_model_pct):
        r = self.rng
        if r.random() * 100 < unknown_model_pct:
            provider, model = r.choice(["anthropic", "openai", "acme"]), "mystery-%d" % r.randint(1, 3)
        else:
            provider, model = r.choice(self.models)
        ev = {"v": 1, "id": self._uuid(), "type": "llm.call", "org": org,
              "ts": BASE_TS + r.randrange(hours * HOUR_MS),
              "provider": provider, "model": model,
              "input_tokens": r.randint(0, 200000), "output_tokens": r.randint(0, 20000)}
        if r.random() < 0.9:
            ev["project"] = r.choice(self.projects[org])
        if r.random() < 0.4:
            ev["cache_read_tokens"] = r.randint(0, 500000)
        if r.random() < 0.2:
            ev["cache_write_tokens"] = r.randint(0, 100000)
        if r.random() < 0.1:
            ev["byo"] = True
        elif r.random() < 0.05:
            ev["byo"] = False
        if r.random() < 0.3:
            ev["run"] = "run-%d" % r.randint(1, 10**6)
        if r.random() < 0.05:
            ev["extra_field_from_the_future"] = [1, 2, {"x": "y"}]
        return ev

    def _other(self, org, hours):
        """A valid event of a type whose effect comes in later issues: applied, no cost."""
        r = self.rng
        t = self.OTHER_TYPES[sum(self.other_counts.values()) % len(self.OTHER_TYPES)]
        ev = {"v": 1, "id": self._uuid(), "type": t, "org": org,
              "ts": BASE_TS + r.randrange(hours * HOUR_MS)}
        proj = r.choice(self.projects[org])
        fields = {
            "workflow.started": {"project": proj, "workflow": "wf-%d" % r.randint(1, 999),
                                 "complexity": r.choice(["small", "medium", "large"])},
            "workflow.finished": {"workflow": "wf-%d" % r.randint(1, 999),
                                  "status": r.choice(["succeeded", "failed", "cancelled"])},
            "agent.requested": {"project": proj, "run": "run-%d" % r.randint(1, 999)},
            "agent.finished": {"run": "run-%d" % r.randint(1, 999)},
            "agent.cancelled": {"run": "run-%d" % r.randint(1, 999)},
            "api.call": {"integration": "github", "count": r.randint(1, 5)},
            "storage.report": {"bytes": r.randint(0, 10**10)},
            "subscription.changed": {"tier": r.choice(["pro", "team", "payg"])},
            "subscription.cancelled": {},
            "credits.added": {"amount_micros": r.randint(1, 10**8)},
            "pack.purchased": {"workflows": r.choice([10, 50])},
            "budget.set": {"monthly_limit_micros": r.randint(0, 10**9),
                           "thresholds": [50, 80, 100]},
        }[t]
        ev.update(fields)
        self.other_counts[t] = self.other_counts.get(t, 0) + 1
        return ev

    def _account(self, ev):
        nanos, unpriced = cost_nanos(self.prices, ev)
        key = (ev["org"], ev.get("project", ""), ev["provider"], ev["model"],
               ev["ts"] - ev["ts"] % HOUR_MS, not ev.get("byo", False))
        row = self.expected_rows.setdefault(key, [0] * 7)
        row[0] += 1
        row[1] += ev["input_tokens"]
        row[2] += ev["output_tokens"]
        row[3] += ev.get("cache_read_tokens", 0)
        row[4] += ev.get("cache_write_tokens", 0)
        row[5] += nanos
        row[6] += 1 if unpriced else 0

    def _poison(self, kind, hours, unknown_model_pct):
        r = self.rng
        org = r.choice(self.orgs)
        ev = self._event(org, hours, unknown_model_pct)
        key = org.encode()
        if kind == "truncated":
            b = pack(ev)
            return key, b[:r.randint(1, len(b) - 1)], {"malformed", "limit"}
        if kind == "wrong_type":
            ev["input_tokens"] = str(ev["input_tokens"])
            return key, pack(ev), {"wrong_type"}
        if kind == "missing_field":
            del ev[r.choice(["model", "provider", "id", "ts", "output_tokens"])]
            return key, pack(ev), {"missing_field"}
        if kind == "oversize":
            ev["id"] = "x" * r.randint(65, 300)
            return key, pack(ev), {"too_long"}
        if kind == "absurd_count":
            # A map declaring 4 billion entries, then a few real bytes.
            return key, b"\xdf\xff\xff\xff\xff" + pack({"v": 1})[1:], {"limit"}
        if kind == "huge_str_header":
            b = pack(ev)
            return key, b[:3] + b"\xdb\x7f\xff\xff\xff" + b"abc", {"limit", "malformed"}
        if kind == "deep_nesting":
            b = b"\x81\xa1x" * 40 + b"\x01"
            return key, b"\x86" + pack({"v": 1, "id": "a", "type": "llm.call", "org": org,
                                         "ts": 5})[1:] + b"\xa1y" + b, {"limit"}
        if kind == "unknown_type":
            ev["type"] = "llm.calls"
            return key, pack(ev), {"unknown_type"}
        if kind == "bad_version":
            ev["v"] = 2
            return key, pack(ev), {"bad_version"}
        if kind == "not_map":
            return key, msgpack.packb([1, 2, 3]), {"not_map"}
        if kind == "bad_utf8":
            b = pack(ev)
            return key, b.replace(org.encode(), b"org-\xff\xfe" + org.encode()[6:], 1), {"bad_string"}
        if kind == "negative":
            ev["output_tokens"] = -r.randint(1, 1000)
            return key, pack(ev), {"out_of_range"}
        if kind == "key_mismatch":
            other = r.choice([o for o in self.orgs if o != org])
            return other.encode(), pack(ev), {"key_mismatch"}
        # garbage: random bytes, whatever the decoder calls them
        return key, bytes(r.getrandbits(8) for _ in range(r.randint(1, 80))), None

    def _gen(self, events, repeat_pct, poison_pct, hours, unknown_model_pct, other_pct):
        r = self.rng
        sent = []  # applied events, for repeats
        total = events
        while len(self.messages) < total:
            x = r.random() * 100
            if x < poison_pct:
                kind = self.POISON_KINDS[len(self.poison) % len(self.POISON_KINDS)]
                k, v, names = self._poison(kind, hours, unknown_model_pct)
                self.messages.append((k, v))
                self.poison.append((v, names))
            elif x < poison_pct + other_pct:
                ev = self._other(r.choice(self.orgs), hours)
                self.messages.append((ev["org"].encode(), pack(ev)))
                sent.append(ev)
                self.applied_ids.add((ev["org"], ev["id"]))
            elif x < poison_pct + other_pct + repeat_pct and sent:
                ev = dict(r.choice(sent))
                if r.random() < 0.2 and ev["type"] == "llm.call":
                    # same id, different content: the first one counts
                    ev["input_tokens"] = r.randint(0, 200000)
                self.messages.append((ev["org"].encode(), pack(ev)))
                self.duplicates += 1
            else:
                ev = self._event(r.choice(self.orgs), hours, unknown_model_pct)
                self.messages.append((ev["org"].encode(), pack(ev)))
                sent.append(ev)
                self.applied_ids.add((ev["org"], ev["id"]))
                self._account(ev)

    def expected_by_org(self):
        out = {}
        for key, row in self.expected_rows.items():
            o = out.setdefault(key[0], [0, 0, 0])
            o[0] += row[5]
            o[1] += row[0]
            o[2] += row[6]
        return out


def fetch_rows(pg, db="meterd"):
    """cost_records as the same dict shape as Stream.expected_rows."""
    rows = pg.psql(
        "SELECT org_id, project_id, provider, model,"
        " (extract(epoch from hour) * 1000)::bigint, billable, calls, input_tokens,"
        " output_tokens, cache_read_tokens, cache_write_tokens, cost_nanos, unpriced_calls"
        " FROM cost_records", db)
    out = {}
    for r in rows:
        key = (r[0], r[1], r[2], r[3], int(r[4]), r[5] == "t")
        out[key] = [int(x) for x in r[6:13]]
    return out


def compare_rows(expected, got, limit=10):
    """Returns a list of human-readable differences (empty when equal)."""
    diffs = []
    for k in sorted(set(expected) | set(got), key=repr):
        if expected.get(k) != got.get(k):
            diffs.append("%r: expected %r, got %r" % (k, expected.get(k), got.get(k)))
            if len(diffs) >= limit:
                break
    return diffs
