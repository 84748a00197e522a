#!/usr/bin/python3
"""Writes the seed corpus of the fuzz_wire target: one file per case.

    /usr/bin/python3 tests/fuzz/make_corpus.py CORPUS_DIR [--dict FILE]

Run with Debian's /usr/bin/python3, which has python3-msgpack. The corpus holds one valid
event of every input type, a few valid variants, and poison shapes (forged container and string
headers, deep nesting, the reserved byte, truncation, trailing bytes, duplicate and non-string
keys, invalid UTF-8, out-of-range integers). With --dict it also writes a libFuzzer dictionary
of the protocol's keys and values. Nothing here is committed: the corpus is generated at test
time.
"""
import os
import struct
import sys

import msgpack

ENV = {
    "v": 1,
    "id": "6f1c2a9e-8d4b-4c3e-9a7f-0e5d1b2c3a4f",
    "org": "org-42",
    "ts": 1767225600000,
}

VALID = {
    "workflow.started": {"project": "proj-1", "workflow": "wf-1", "complexity": "large"},
    "workflow.finished": {"workflow": "wf-1", "status": "failed", "project": "proj-1"},
    "agent.requested": {"project": "proj-1", "run": "run-7", "workflow": "wf-1"},
    "agent.finished": {"run": "run-7"},
    "agent.cancelled": {"run": "run-7", "project": "proj-1"},
    "llm.call": {
        "project": "proj-1",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "input_tokens": 1200,
        "output_tokens": 350,
        "cache_read_tokens": 5000,
        "cache_write_tokens": 0,
        "byo": False,
    },
    "api.call": {"integration": "github", "count": 3, "project": "proj-1"},
    "storage.report": {"bytes": 123456789},
    "subscription.changed": {
        "tier": "pro",
        "period_start": 1767225600000,
        "period_end": 1769904000000,
        "promo": "new_year",
    },
    "subscription.cancelled": {},
    "credits.added": {"amount_micros": 5000000},
    "pack.purchased": {"workflows": 50},
    "budget.set": {"monthly_limit_micros": 100000000, "thresholds": [50, 80, 100]},
}


def event(type_, **fields):
    m = dict(ENV, type=type_)
    m.update(VALID[type_])
    m.update(fields)
    return m


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def raw_map(pairs):
    """A map from already-packed (key, value) byte pairs, allowing duplicates and odd keys."""
    n = len(pairs)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(k + v for k, v in pairs)


def raw_str(b):
    return bytes([0xA0 | len(b)]) + b if len(b) < 32 else b"\xd9" + bytes([len(b)]) + b


def event_pairs(type_, **fields):
    return [(pack(k), pack(v)) for k, v in event(type_, **fields).items()]


def cases():
    for t in VALID:
        yield "valid-" + t, pack(event(t))
    llm = event("llm.call")
    yield "valid-llm-minimal", pack({k: v for k, v in llm.items()
                                     if k not in ("project", "cache_read_tokens",
                                                  "cache_write_tokens", "byo")})
    yield "valid-llm-byo-nil-extra", pack(dict(llm, byo=True, run=None, extra={"a": [1, 2.5]}))
    yield "valid-workflow-default", pack({k: v for k, v in event("workflow.started").items()
                                          if k != "complexity"})
    yield "valid-pack-10", pack(event("pack.purchased", workflows=10))
    yield "valid-utf8", pack(event("llm.call", model="caf\u00e9 \u20ac \U0001F600"))

    # Poison shapes.
    yield "poison-array32", b"\xdd\xff\xff\xff\xff"
    yield "poison-map32", b"\xdf\xff\xff\xff\xff"
    yield "poison-str32", b"\x81\xa1v\xdb\xff\xff\xff\xff"
    yield "poison-ext32", b"\x81\xa1v\xc9\xff\xff\xff\xff\x01"
    yield "poison-deep", b"\x81\xa1x" + b"\x91" * 64 + b"\x01"
    yield "poison-reserved", pack(llm)[:-1] + b"\xc1"
    yield "poison-truncated", pack(llm)[:40]
    yield "poison-trailing", pack(llm) + b"\xc0"
    yield "poison-not-map", pack(["llm.call", 1, 2])
    yield "poison-int-key", raw_map(event_pairs("llm.call") + [(pack(1), pack(2))])
    yield "poison-duplicate", raw_map(event_pairs("llm.call") + [(pack("id"), pack("again"))])
    bad_utf8 = [(k, raw_str(b"\xed\xa0\x80x") if k == pack("org") else v)
                for k, v in event_pairs("llm.call")]
    yield "poison-bad-utf8", raw_map(bad_utf8)
    yield "poison-nul", pack(event("llm.call", id="ab\x00cd"))
    yield "poison-bin-id", pack(dict(llm, id=b"binary-id"))
    yield "poison-u64-ts", pack(event("llm.call", ts=2**64 - 1))
    yield "poison-v2", pack(event("llm.call", v=2))
    yield "poison-unknown-type", pack(dict(llm, type="llm.calls"))
    yield "poison-thresholds", pack(event("budget.set", thresholds=[50, "x", 101]))
    yield "poison-pack-20", pack(event("pack.purchased", workflows=20))
    yield "poison-period", pack(event("subscription.changed", period_start=5, period_end=5))
    yield "poison-long-id", pack(event("llm.call", id="a" * 65))


def dictionary():
    words = set(ENV) | {"type", "v"}
    for t, fields in VALID.items():
        words.add(t)
        words |= set(fields)
    words |= {"small", "medium", "large", "succeeded", "failed", "cancelled", "anthropic"}
    lines = []
    for w in sorted(words):
        packed = pack(w)
        lines.append('"' + "".join("\\x%02x" % b for b in packed) + '"')
    for tok in (b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xde\x00\x10", b"\xcf\x7f\xff\xff\xff\xff\xff\xff\xff",
                b"\xcf\x80\x00\x00\x00\x00\x00\x00\x00", b"\xd9\x41", b"\xc0", b"\xc3"):
        lines.append('"' + "".join("\\x%02x" % b for b in tok) + '"')
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--dict"):
        sys.stderr.write("usage: make_corpus.py CORPUS_DIR [--dict FILE]\n")
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    n = 0
    for name, data in cases():
        with open(os.path.join(out, name + ".msgpack"), "wb") as f:
            f.write(data)
        n += 1
    if len(argv) == 4:
        with open(argv[3], "w") as f:
            f.write(dictionary())
    print("wrote %d seeds to %s" % (n, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
