#!/usr/bin/python3
"""Acceptance (operate it): meterd speaks systemd's notify protocol.

The test plays systemd: it binds a Unix datagram socket, starts meterd with NOTIFY_SOCKET
pointing at it and WATCHDOG_USEC=2000000 (what a unit with Type=notify and WatchdogSec=2s
passes), and reads what meterd sends: READY=1 only once /readyz would say 200, WATCHDOG=1 at
least every second (half the watchdog interval), RELOADING=1 then READY=1 around SIGHUP, and
STOPPING=1 on SIGTERM, before an exit with status 0.
"""
import os
import signal
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from meterlab import Lab, log  # noqa: E402


def main():
    with Lab("sdnotify", partitions=2) as lab:
        path = os.path.join(lab.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.5)
        d = lab.daemon("a", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        got = []  # (time, message)

        def drain(until):
            while time.time() < until:
                try:
                    got.append((time.time(), sock.recv(4096).decode()))
                except socket.timeout:
                    pass

        t0 = time.time()
        d.start()
        deadline = t0 + 60
        while time.time() < deadline and not any("READY=1" in m for _, m in got):
            drain(time.time() + 0.5)
        ready = [t for t, m in got if "READY=1" in m]
        assert ready, "no READY=1 within 60 s: %r\n%s" % (got, d.tail())
        with urllib.request.urlopen(d.url("/readyz"), timeout=5) as r:
            assert r.status == 200
        drain(time.time() + 3.5)
        dogs = [t for t, m in got if m == "WATCHDOG=1" and t > ready[0]]
        gaps = [b - a for a, b in zip(dogs, dogs[1:])]
        assert len(dogs) >= 3 and max(gaps) < 1.5, "watchdog pings %r" % gaps
        d.kill(signal.SIGHUP)
        drain(time.time() + 1.5)
        after_hup = [m for t, m in got if t > dogs[-1] and m != "WATCHDOG=1"]
        assert after_hup[:2] == ["RELOADING=1", "READY=1"], after_hup
        d.proc.send_signal(signal.SIGTERM)
        drain(time.time() + 1)
        rc = d.proc.wait(30)
        assert rc == 0, d.tail()
        assert any(m == "STOPPING=1" for _, m in got), got
        log("READY=1 %.1f s after start, watchdog every %.2f s at most, RELOADING/READY on"
            " SIGHUP, STOPPING=1 on SIGTERM, exit 0" % (ready[0] - t0, max(gaps)))
        sock.close()
    log("PASS")


if __name__ == "__main__":
    main()
