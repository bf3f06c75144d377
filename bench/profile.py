#!/usr/bin/env python3
"""Where does a preauth (or an invited registration) spend its server time, stock vs ours?

Two probes, each on fresh private Prosody servers (same setup as bench/bench.py, with
bench/plugins/mod_bench_timing.lua loaded):

  steps  In-server profile of the preauth hot path: `benchtiming:preauth_steps` calls the
         loaded module's own preauth handler (stock or ours, whatever its internal API) with
         a stub session whose send() does nothing, in the server's own Lua state after a
         short load run, and times it against the store read and references (st.reply,
         tostring of the stanza). Also the Lua bytes allocated per call (GC stopped).
  perf   `perf record` on the server process during a preauth (or invited) load run,
         then server CPU per operation split by DSO (Lua VM, kernel, libc, our library,
         expat): shows how much of a difference is in our library, in the Lua VM (table and
         string building, GC) or in malloc. Needs `perf` (Debian: linux-perf).

usage: python3 bench/profile.py steps [--storage internal,sqlite] [--n 0]
       python3 bench/profile.py perf [--storage sqlite] [--what preauth|invited] [--seconds 4]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402


def start(root: Path, kind: str, storage: str, ours: Path, n: int):
    srv = B.BenchServer(root, kind, storage, ours, timing=True,
                        stock_dir=B.install_stock(root)).start()
    admin = srv.admin()
    if n:
        admin.create(n)
    token = admin.create(1, want_tokens=True)[0]
    B.measure_preauth(srv, token, 8, 0.5, 5000)   # warm the heap like a load run
    return srv, admin, token


def steps(args, root: Path, ours: Path) -> None:
    for storage in args.storage.split(","):
        for kind in ("stock", "ours"):
            srv, admin, token = start(root, kind, storage, ours, args.n)
            try:
                iterations = 20000 if args.n < 1000 else 200
                out = admin.run(f'benchtiming:preauth_steps("{B.HOST}", "{token}", {iterations})')
                print(f"\n{kind}, {storage}, N={args.n}: µs per call, bytes allocated per call")
                for part in out.split(";"):
                    name, us, nbytes = part.split("|")
                    print(f"  {name:52s} {float(us):9.2f} µs {int(nbytes):7d} B")
            finally:
                admin.close()
                srv.stop()


DSO_RE = re.compile(r"^\s*([\d.]+)%\s+(\S+)")


def perf(args, root: Path, ours: Path) -> None:
    if not shutil.which("perf"):
        sys.exit("perf not found (Debian: apt-get install linux-perf)")
    for storage in args.storage.split(","):
        split = {}
        for kind in ("stock", "ours"):
            srv, admin, token = start(root, kind, storage, ours, args.n)
            data = root / f"perf-{kind}-{storage}.data"
            try:
                rec = subprocess.Popen(["perf", "record", "-F", "2000", "-o", str(data),
                                        "-p", str(srv.proc.pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                if args.what == "preauth":
                    t = B.measure_preauth(srv, token, 8, args.seconds, 10 ** 6)
                else:
                    t = B.measure_invited(srv, admin, 8, args.seconds, 10 ** 6, B.round_size(storage, args.n),
                                          settle_token=token if kind == "ours" else None)
                rec.send_signal(2)
                rec.wait(60)
            finally:
                admin.close()
                srv.stop()
            if t.failed or not t.ok:
                print(f"  {kind}: {t.ok} ok, {t.failed} failed: {t.first_error}")
            report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso",
                                     "--stdio", "-g", "none"], capture_output=True, text=True).stdout
            us_per_op = t.server_cpu / max(t.ok, 1) * 1e6
            shares = collections.OrderedDict()
            for line in report.splitlines():
                m = DSO_RE.match(line)
                if m:
                    shares[m.group(2)] = float(m.group(1)) / 100
            split[kind] = (us_per_op, shares, t.ok / max(t.elapsed, 1e-9))
        print(f"\n{storage}, N={args.n}, {args.what}: server CPU µs per operation by DSO "
              "(perf samples share × CPU/op)")
        print(f"  {'dso':32s} {'stock':>9s} {'ours':>9s} {'ours-stock':>11s}")
        names = list(dict.fromkeys(list(split["stock"][1]) + list(split["ours"][1])))
        for name in names:
            s = split["stock"][0] * split["stock"][1].get(name, 0)
            o = split["ours"][0] * split["ours"][1].get(name, 0)
            if s < 0.05 and o < 0.05:
                continue
            print(f"  {name:32s} {s:9.1f} {o:9.1f} {o - s:+11.1f}")
        print(f"  {'total':32s} {split['stock'][0]:9.1f} {split['ours'][0]:9.1f} "
              f"{split['ours'][0] - split['stock'][0]:+11.1f}")
        print(f"  (rates: stock {split['stock'][2]:.0f}/s, ours {split['ours'][2]:.0f}/s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=["steps", "perf"])
    ap.add_argument("--storage", default="internal,sqlite")
    ap.add_argument("--n", type=int, default=0, help="pending unrelated invites")
    ap.add_argument("--what", choices=["preauth", "invited"], default="preauth")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--data-root")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="invites-profile-", dir=args.data_root))
    try:
        ours = B.install_ours(root)
        (steps if args.probe == "steps" else perf)(args, root, ours)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
