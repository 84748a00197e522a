"""billing_check — reading what meterd billed (PostgreSQL with psql, budget.events with
python3-kafka) and comparing it with the hand-written fixtures of billing_stream.py. Shared by
the billing integration tests.

Every check appends a readable problem to a list instead of stopping at the first, so that a
failure shows every discrepancy at once.
"""

import json
import os
import re
from decimal import Decimal

import msgpack
import xxhash

from meterlab import SOURCE, read_topic
import billing_stream as bs


def _ms(col):
    return "(extract(epoch FROM %s) * 1000)::bigint" % col


def _int(text):
    d = Decimal(text)
    assert d == d.to_integral_value(), "not an integer: %r" % text
    return int(d)


# ---- PostgreSQL -------------------------------------------------------------------------------

def fetch_invoices(pg, db):
    """{id: (org, period_start, period_end, nominal_end, status, subtotal, credits, total)}."""
    rows = pg.psql("SELECT id, org_id, %s, %s, %s, status, subtotal_cents, credits_cents,"
                   " total_cents FROM invoices" % (_ms("period_start"), _ms("period_end"),
                                                   _ms("nominal_end")), db)
    return {r[0]: (r[1], int(r[2]), int(r[3]), int(r[4]), r[5], int(r[6]), int(r[7]),
                   int(r[8])) for r in rows}


def fetch_lines(pg, db):
    """{invoice id: [(kind, detail, quantity_raw, quantity_scale, unit_price_micros,
    amount_cents)] in line_no order} and the full rows (description and quantity too)."""
    rows = pg.psql("SELECT invoice_id, line_no, kind, detail, quantity_raw::text,"
                   " quantity_scale::text, unit_price_micros, amount_cents, description,"
                   " quantity::text FROM invoice_line_items ORDER BY invoice_id, line_no", db)
    out, full = {}, []
    for r in rows:
        out.setdefault(r[0], []).append((r[2], r[3], _int(r[4]), _int(r[5]), int(r[6]),
                                         int(r[7])))
        full.append(tuple(r))
    return out, full


def fetch_rollups(pg, db):
    rows = pg.psql("SELECT org_id, %s, meter, quantity::text FROM usage_rollups"
                   % _ms("period_start"), db)
    out = {}
    for r in rows:
        out.setdefault((r[0], int(r[1])), {})[r[2]] = _int(r[3])
    return out


def fetch_stretches(pg, db):
    rows = pg.psql("SELECT org_id, %s, %s, %s, tier, promo, fee_micros FROM subscriptions"
                   " ORDER BY org_id, period_start, started_at"
                   % (_ms("period_start"), _ms("started_at"), _ms("ended_at")), db)
    out = {}
    for r in rows:
        out.setdefault((r[0], int(r[1])), []).append((int(r[2]), int(r[3]), r[4], r[5],
                                                      int(r[6])))
    return out


def fetch_accounts(pg, db):
    rows = pg.psql("SELECT org_id, tier, promo, %s, %s, credits_micros, budget_micros,"
                   " thresholds::text FROM billing_accounts"
                   % (_ms("period_start"), _ms("period_end")), db)
    return {r[0]: (r[1], r[2], int(r[3]), int(r[4]), int(r[5]), int(r[6]), r[7]) for r in rows}


def fetch_reconciliation(pg, db):
    return pg.psql("SELECT invoice_id, ok::text, lines, lines_subtotal_cents,"
                   " lines_credits_cents, bad_lines FROM invoice_reconciliation"
                   " ORDER BY invoice_id", db)


def dump_tables(pg, db):
    """Every billing row (all columns but updated_at), for comparing two runs."""
    q = {
        "invoices": "SELECT id, org_id, period_start, period_end, nominal_end, status,"
                    " subtotal_cents, credits_cents, total_cents FROM invoices ORDER BY id",
        "invoice_line_items": "SELECT invoice_id, line_no, kind, detail, description, quantity,"
                              " quantity_raw, quantity_scale, unit_price_micros, amount_cents"
                              " FROM invoice_line_items ORDER BY invoice_id, line_no",
        "usage_rollups": "SELECT org_id, period_start, meter, quantity FROM usage_rollups"
                         " ORDER BY org_id, period_start, meter",
        "subscriptions": "SELECT org_id, period_start, started_at, ended_at, tier, promo,"
                         " fee_micros FROM subscriptions ORDER BY org_id, period_start,"
                         " started_at",
        "billing_accounts": "SELECT org_id, tier, promo, period_start, period_end,"
                            " credits_micros, budget_micros, thresholds FROM billing_accounts"
                            " ORDER BY org_id",
    }
    return {t: pg.psql("SET TIME ZONE 'UTC'; " + s, db) for t, s in q.items()}


def inv_id(org, period_start):
    return "%s/%d" % (org, period_start)


# The accounts at the end: (tier, promo, period_start, period_end, credits_micros,
# budget_micros, thresholds). Periods after [Jan 31, …) are "one month after the end, same day,
# clamped" (ledger.h) — only their starts are asserted, as in EXPECTED_DRAFTS.
EXPECTED_ACCOUNTS = {
    "free-2": ("free", "", bs.FEB1, 0, 0, "{}"),
    "freeq-9": ("free", "", bs.FEB1, 0, 0, "{}"),
    "life-7": ("lifetime", "", bs.FEB1, 0, 0, "{}"),
    "byo-9": ("byo", "", bs.JAN31, 0, 0, "{}"),
    "budget-1": ("pro", "", bs.JAN31, 0, 80_000_000, "{50,80,100}"),
    "pro-1": ("pro", "", bs.JAN31, 0, 0, "{}"),
    "team-2": ("team", "", bs.JAN31, 0, 0, "{}"),
    "upgrade-6": ("team", "", bs.JAN31, 0, 0, "{}"),
    "promo-3": ("pro", "new_year", bs.MAY1, 0, 0, "{}"),
    "ent-2": ("enterprise", "", bs.MAY1, 0, 0, "{}"),
    # $80 − $50 (January) − $30 ([Jan 31, Feb 28)) = 0
    "credcarry-2": ("pro", "", bs.FEB28, 0, 0, "{}"),
    "credout-1": ("payg", "", bs.FEB1, 0, 0, "{}"),  # $30 − $30
    "payg-6": ("payg", "", bs.FEB1, 0, 0, "{}"),
    "restart-4": ("free", "", bs.jan(46), 0, 0, "{}"),
}


def check_billing(pg, db):
    """Compares the database with the fixtures; returns a list of problems (empty: equal)."""
    problems = []
    invoices = fetch_invoices(pg, db)
    lines, _ = fetch_lines(pg, db)

    # final invoices and their lines, to the cent
    want_final = {}
    for org, ps, pe, sub, cr, tot, ls in bs.EXPECTED_FINALS:
        i = inv_id(org, ps)
        want_final[i] = ((org, ps, pe, bs.CUT_SHORT.get(i, pe), "final", sub, cr, tot), ls)
    got_final = {i: v for i, v in invoices.items() if v[4] == "final"}
    for i in sorted(set(want_final) - set(got_final)):
        problems.append("final invoice %s missing (row: %r)" % (i, invoices.get(i)))
    for i in sorted(set(got_final) - set(want_final)):
        problems.append("unexpected final invoice %s: %r lines %r" % (i, got_final[i],
                                                                       lines.get(i)))
    for i in sorted(set(want_final) & set(got_final)):
        row, ls = want_final[i]
        if got_final[i] != row:
            problems.append("invoice %s: expected (org, start, end, nominal_end, status,"
                            " subtotal, credits, total) %r, got %r" % (i, row, got_final[i]))
        if lines.get(i, []) != ls:
            problems.append("invoice %s lines:\n  expected %r\n  got      %r" % (
                i, ls, lines.get(i, [])))

    # drafts: exactly one per organization, the open period
    drafts = {v[0]: (i, v) for i, v in invoices.items() if v[4] == "draft"}
    for org, ps, sub, cr, tot in bs.EXPECTED_DRAFTS:
        if org not in drafts:
            problems.append("%s has no draft" % org)
            continue
        i, v = drafts[org]
        if (i, v[1], v[5], v[6], v[7]) != (inv_id(org, ps), ps, sub, cr, tot):
            problems.append("%s draft: expected (id, start, subtotal, credits, total) %r,"
                            " got %r" % (org, (inv_id(org, ps), ps, sub, cr, tot),
                                         (i, v[1], v[5], v[6], v[7])))
    ndrafts = sum(1 for v in invoices.values() if v[4] == "draft")
    if ndrafts != len(bs.EXPECTED_DRAFTS):
        problems.append("%d drafts, expected %d" % (ndrafts, len(bs.EXPECTED_DRAFTS)))

    # reconciliation
    recon = fetch_reconciliation(pg, db)
    if len(recon) != len(invoices):
        problems.append("invoice_reconciliation has %d rows for %d invoices" % (
            len(recon), len(invoices)))
    for r in recon:
        if r[1] != "true":
            problems.append("invoice_reconciliation not ok: %r" % r)

    # usage rollups of every final period
    # (a meter that stayed 0 may have no row: meterd writes a meter when it changes)
    rollups = fetch_rollups(pg, db)
    for key, want in sorted(bs.EXPECTED_ROLLUPS.items()):
        got = rollups.get(key, {})
        got = dict({m: got.get(m, 0) for m in bs.METERS},
                   **{m: v for m, v in got.items() if m not in bs.METERS})
        if got != want:
            problems.append("usage_rollups %s/%d:\n  expected %r\n  got      %r" % (
                key[0], key[1], want, got))

    for key, want in sorted(bs.EXPECTED_DRAFT_ROLLUPS.items()):
        got = {m: rollups.get(key, {}).get(m, 0) for m in want}
        if got != want:
            problems.append("usage_rollups of the open period %s/%d: expected %r, got %r" % (
                key[0], key[1], want, got))

    # tier stretches
    stretches = fetch_stretches(pg, db)
    for key, want in sorted(bs.EXPECTED_STRETCHES.items()):
        if stretches.get(key) != want:
            problems.append("subscriptions %s/%d: expected %r, got %r" % (
                key[0], key[1], want, stretches.get(key)))

    # accounts
    accounts = fetch_accounts(pg, db)
    for org, want in sorted(EXPECTED_ACCOUNTS.items()):
        got = accounts.get(org)
        if got is None or (got[0], got[1], got[2], got[4], got[5], got[6]) != want:
            problems.append("billing_accounts %s: expected (tier, promo, period_start,"
                            " credits, budget, thresholds) %r, got %r" % (org, want, got))
    return problems


# ---- budget.events -----------------------------------------------------------------------------

BUDGET_ID = re.compile(r"^b-[0-9a-f]{32}$")


def budget_validators():
    """{type: validator} for proto/output/budget.warning and budget.exceeded.schema.json."""
    import jsonschema
    out = {}
    for typ in ("budget.warning", "budget.exceeded"):
        with open(os.path.join(SOURCE, "proto", "output", typ + ".schema.json")) as f:
            s = json.load(f)
        cls = jsonschema.validators.validator_for(s)
        cls.check_schema(s)
        out[typ] = cls(s)
    return out


def budget_id(org, period_start, typ, what):
    """The documented id (daemon/wire.h): "b-" and the hex XXH3-128 of (org, decimal
    period_start, type, decimal threshold or reason), each followed by 0xFF."""
    data = b"".join(str(x).encode() + b"\xff" for x in (org, period_start, typ, what))
    return "b-" + xxhash.xxh3_128(data).hexdigest()


def read_budget(bootstrap, topic, problems):
    """Every budget event on `topic` in topic order (decoded), checked one by one: key = org,
    the envelope and fields of PRODUCT.md, the id format and formula, the JSON Schema in
    proto/output. Problems are appended to `problems`."""
    vals = budget_validators()
    out = []
    for rec in read_topic(bootstrap, topic):
        e = msgpack.unpackb(rec.value, raw=False)
        out.append(e)
        if rec.key != e.get("org", "").encode():
            problems.append("budget event keyed %r for org %r" % (rec.key, e.get("org")))
        what = "threshold" if e.get("type") == "budget.warning" else "reason"
        keys = {"v", "id", "type", "org", "ts", "period_start", what, "spend_micros",
                "limit_micros", "cause"}
        if set(e) != keys or e.get("v") != 1:
            problems.append("budget event fields %r, expected %r: %r" % (sorted(e), sorted(keys),
                                                                         e))
            continue
        if not BUDGET_ID.match(e["id"]):
            problems.append("budget event id %r is not b- and 32 hex digits" % e["id"])
        elif e["id"] != budget_id(e["org"], e["period_start"], e["type"], e[what]):
            problems.append("budget event id %r is not the documented XXH3-128: %r" % (
                e["id"], e))
        v = vals.get(e["type"])
        errs = sorted(v.iter_errors(e), key=str) if v is not None else ["unknown type"]
        if errs:
            problems.append("budget event invalid against %s.schema.json: %s: %r" % (
                e["type"], getattr(errs[0], "message", errs[0]), e))
    return out, sorted(vals)


def budget_tuple(e):
    what = e.get("threshold") if e["type"] == "budget.warning" else e.get("reason")
    return (e["type"], e["org"], what, e["period_start"], e["spend_micros"],
            e["limit_micros"], e["cause"], e["ts"])


def dedup_budget(events, problems):
    """{id: event}; a repeated id must carry the same event."""
    by_id = {}
    for e in events:
        prev = by_id.setdefault(e["id"], e)
        if prev != e:
            problems.append("budget id %s names two events:\n  %r\n  %r" % (e["id"], prev, e))
    return by_id


def check_budget(by_id, orgs, problems):
    want = bs.expected_budget(orgs)
    got = sorted(budget_tuple(e) for e in by_id.values())
    for w in sorted(set(want) - set(got)):
        problems.append("budget event missing: %r" % (w,))
    for g in sorted(set(got) - set(want)):
        problems.append("unexpected budget event: %r" % (g,))
    if len(got) != len(set(got)):
        problems.append("two budget ids for one event: %r" % got)
