#!/bin/sh
# The local demo, from a fresh Debian machine (as root): installs what is missing, builds, and
# runs meterd on its embedded default — a PostgreSQL cluster created under ./run and
# librdkafka's mock Kafka cluster in its own process — feeds it a sample stream (LLM calls of 25
# organizations, with repeated ids and poison messages) and shows what it did.
#
#   scripts/demo.sh            run, show, stop
#   scripts/demo.sh --keep     leave everything running until Ctrl-C, to poke at it
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" --target meterd mockbroker
exec /usr/bin/python3 tools/demo.py "$@"
