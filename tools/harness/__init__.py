"""The one test harness of this repository (stdlib only).

  harness.xmpp    raw client-to-server XMPP: wire builders, a fast reply scanner for load
                  loops, and `RawStream`, a blocking stream driven by hand
  harness.server  a private Prosody: free port, Lua-literal config, start/stop, logs,
                  tracebacks, prosodyctl, the admin socket

Used by the end-to-end suite (tests/e2e/prosody.py and xmpp_raw.py are its e2e-flavoured
faces), the benchmark (bench/bench.py, bench/profile.py) and tools/register.py, which
import it by path: `sys.path.insert(0, "<repo>/tools")`.
"""
