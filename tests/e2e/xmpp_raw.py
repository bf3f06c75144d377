"""The e2e suite's raw-XML XMPP client: the shared one in tools/harness/xmpp.py
(`RawStream`, `Stanza`, the `NS_*` namespaces, `q`, `xml_escape`, the wire builders)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from harness.xmpp import *  # noqa: E402,F401,F403
