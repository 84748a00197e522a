#!/usr/bin/python3
"""Every configuration key in docs/configuration.md and deploy/meterd.ini exists in the code,
and vice versa, with the same defaults. The code's list is what `meterd check-config` prints
(config.c's table)."""
import os
import re
import subprocess
import sys

SOURCE = os.environ.get("METERD_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("METERD_BUILD", os.path.join(SOURCE, "build"))
VARIABLE = {"meter.instance_id", "meter.prices_file", "meter.tiers_file"}  # hostname:pid, prefix


def ini_keys(text):
    keys, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        m = re.match(r"\[([^\]]+)\]", line)
        if m:
            section = m.group(1)
            continue
        k, _, v = line.partition("=")
        keys["%s.%s" % (section, k.strip())] = v.strip()
    return keys


def main():
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERD_")}
    out = subprocess.run([os.path.join(BUILD, "meterd"), "check-config"], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    code = ini_keys(out)
    with open(os.path.join(SOURCE, "docs", "configuration.md")) as f:
        doc = {m.group(1): m.group(2) for m in
               re.finditer(r"^\| `([a-z_.]+)` \| ([^|]*) \|", f.read(), re.M)}
    doc = {k: v.strip().strip("`").replace("(empty)", "") for k, v in doc.items()}
    with open(os.path.join(SOURCE, "deploy", "meterd.ini")) as f:
        sample = ini_keys(f.read())
    failures = []
    for name, other in (("docs/configuration.md", doc), ("deploy/meterd.ini", sample)):
        for k in sorted(set(code) - set(other)):
            failures.append("%s lacks %s" % (name, k))
        for k in sorted(set(other) - set(code)):
            failures.append("%s documents %s, which the code does not have" % (name, k))
        for k in sorted(set(code) & set(other) - VARIABLE):
            if code[k] != other[k]:
                failures.append("%s: %s default %r, code says %r" % (name, k, other[k], code[k]))
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("%d keys: docs, sample file and code agree" % len(code))


if __name__ == "__main__":
    main()
