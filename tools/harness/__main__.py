"""The harness from the shell, for scripts that drive Prosody themselves (the packaging
tests, the matrix self-test): `PYTHONPATH=<repo>/tools python3 -m harness COMMAND`.

  config DIR PORT [--host H]... [--modules a,b] [--extra LUA]
      writes DIR/prosody.cfg.lua: the same private server as every harness server (own
      files under DIR/data, loopback only, no s2s/HTTP, run_as_root, plaintext allowed),
      log at info to DIR/data/prosody.log, admin socket DIR/data/admin.sock; EXTRA is
      appended as Lua (e.g. storage settings, installer_plugin_path)
  free-port
      a TCP port on 127.0.0.1 that nothing listens on now
  version LAUNCHER
      the version of the Prosody that LAUNCHER starts (never by running it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .server import Server, detect_version, free_port


class ShellServer(Server):
    """A private server whose config a shell script starts itself."""

    log_level = "info"

    def __init__(self, workdir: Path, port: int, hosts: list[str], modules: list[str], extra: str):
        super().__init__(workdir, certs_dir=workdir / "data")
        self.port = port
        self.hosts = tuple(hosts)
        self.modules = modules
        self.extra = extra

    def settings(self) -> dict[str, object]:
        settings = self.private_settings(self.modules)
        del settings["plugin_paths"]  # Prosody's own module folders only, unless EXTRA says
        settings["c2s_require_encryption"] = False
        settings["allow_unencrypted_plain_auth"] = True
        return settings

    def storage_lines(self) -> list[str]:
        return [self.extra] if self.extra else []


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m harness", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="write DIR/prosody.cfg.lua")
    config.add_argument("dir", type=Path)
    config.add_argument("port", type=int)
    config.add_argument("--host", action="append", default=[])
    config.add_argument("--modules", default="roster,saslauth,disco,admin_shell,invites,invites_register")
    config.add_argument("--extra", default="")
    sub.add_parser("free-port", help="print a free TCP port on 127.0.0.1")
    version = sub.add_parser("version", help="print a launcher's Prosody version")
    version.add_argument("launcher")
    args = ap.parse_args(argv)
    if args.command == "config":
        server = ShellServer(args.dir.resolve(), args.port, args.host or ["example.test"],
                             [m for m in args.modules.split(",") if m], args.extra)
        server.write_config()
        print(server.config_path)
    elif args.command == "free-port":
        print(free_port())
    else:
        try:
            print(detect_version(args.launcher))
        except RuntimeError:
            print("unknown")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
