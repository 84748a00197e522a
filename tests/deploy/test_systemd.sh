#!/bin/sh
# deploy/meterd.service passes `systemd-analyze verify` and `systemd-analyze security` rates its
# exposure 2.5 or lower (issue 5, acceptance 4). Works without systemd as PID 1 (a container, a
# CI runner): both commands read the unit file itself (`security --offline=true`).
#
# verify checks that ExecStart= names an executable, so the test checks a copy of the unit whose
# ExecStart= points at the built binary: $1, else $METERD_BUILD/meterd, else build/meterd.
#
#   tests/deploy/test_systemd.sh [path/to/meterd]
set -eu

SOURCE=${METERD_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${1:-${METERD_BUILD:-$SOURCE/build}/meterd}
UNIT=$SOURCE/deploy/meterd.service
MAX_EXPOSURE=2.5

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze not found (scripts/deps.sh installs systemd)"
[ -f "$UNIT" ] || fail "$UNIT not found"
[ -x "$BIN" ] || fail "$BIN is not an executable (pass the built meterd as \$1)"
case $BIN in
/*) ;;
*) BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN") ;;
esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/meterd-systemd.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# The directives the daemon's behaviour relies on must be there, not only a good score.
# shellcheck disable=SC2016 # $MAINPID is systemd's, matched literally
for d in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=' 'KillSignal=SIGTERM' \
    'TimeoutStopSec=15' 'Restart=on-failure' 'ExecReload=/bin/kill -HUP $MAINPID' \
    'ExecStart=/usr/local/bin/meterd -c /etc/meterd/meterd.ini' 'CapabilityBoundingSet=' \
    'NoNewPrivileges=yes' 'ProtectSystem=strict' 'LoadCredential=pgpassword:'; do
    grep -q "^$d" "$UNIT" || fail "meterd.service lacks '$d'"
done

# The copy keeps the unit's name (verify and security report by name).
sed "s|^ExecStart=/usr/local/bin/meterd |ExecStart=$BIN |" "$UNIT" >"$TMP/meterd.service"
grep -q "^ExecStart=$BIN " "$TMP/meterd.service" || fail "could not rewrite ExecStart="

echo "== systemd-analyze verify"
if ! SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$TMP/meterd.service" >"$TMP/verify.out" 2>&1; then
    cat "$TMP/verify.out" >&2
    fail "systemd-analyze verify failed"
fi
cat "$TMP/verify.out"
# verify exits 0 on some warnings about the unit itself (unknown directive, bad value): refuse
# them too. Lines about other units (dependencies of the host) are shown but not held against us.
if grep -q 'meterd\.service' "$TMP/verify.out"; then
    fail "systemd-analyze verify warned about meterd.service"
fi
echo "ok"

echo "== systemd-analyze security --offline=true"
# --threshold is on a 0-100 scale (exposure x 10); the command fails above it.
threshold=$(echo "$MAX_EXPOSURE" | awk '{ printf "%d", $1 * 10 }')
rc=0
SYSTEMD_COLORS=0 systemd-analyze security --no-pager --offline=true --threshold="$threshold" \
    "$TMP/meterd.service" >"$TMP/security.out" 2>&1 || rc=$?
# Only the directives that still cost something, then the verdict.
grep -v '^✓' "$TMP/security.out" || true
level=$(sed -n 's/.*Overall exposure level for meterd\.service: \([0-9.]*\).*/\1/p' "$TMP/security.out")
[ -n "$level" ] || { cat "$TMP/security.out" >&2; fail "no exposure level in the output"; }
[ "$rc" -eq 0 ] || fail "systemd-analyze security exited $rc (exposure $level > $MAX_EXPOSURE)"
awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l + 0 <= m + 0) }' ||
    fail "exposure $level > $MAX_EXPOSURE"
echo "exposure level: $level (required <= $MAX_EXPOSURE)"
echo "PASS"
