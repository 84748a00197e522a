#!/bin/sh
# Installs every Debian package that building, running and testing meterd uses.
# Idempotent: asks apt only for what is missing. Needs root (or sudo).
set -eu
PKGS="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
 libuv1-dev librdkafka-dev libpq-dev libmsgpack-dev libcmocka-dev libxxhash-dev uthash-dev
 libinih-dev libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev libsystemd-dev libsodium-dev
 postgresql-15 postgresql-client-15 kcat python3-kafka python3-msgpack python3-xxhash
 python3-jsonschema python3-yaml
 prometheus systemd util-linux procps"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
