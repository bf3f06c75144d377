"""Generated hostile input for the preauth IQ (SPEC §4.2) and XEP-0379 subscription
presences (SPEC §4.5), and a runner that sends it to one real Prosody.

Every generated `Case` carries the exact bytes to send and what must happen, derived from
the spec and from how Prosody 0.12 routes stanzas (core/stanza_router.lua,
util/xmppstream.lua, mod_presence.lua):

  VALID         the IQ reaches our handler with a token that is valid → one `result`
  INVALID       the IQ reaches our handler with a bad token → cancel/item-not-found with
                the XEP-0445 text, never a `result`
  REFUSED       Prosody (or our wrong-host check) answers with another error condition
  IGNORED       no reply at all (IQ result/error: Prosody discards them)
  STREAM_ERROR  not well-formed (or otherwise unacceptable) XML: the server closes the
                stream with a stream error; the runner reconnects
  APPROVED      presence: the token pre-approves the subscription, so the contact's
                account asks back at once (a `subscribe` from the target arrives)
  NOT_APPROVED  presence: normal subscription handling only (no `subscribe` from target)

The generator is driven by one `random.Random(seed)`; the real tokens it mutates come
from the server under test, everything else (which family, which mutation, which
structure) is fixed by the seed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from expect import TOKEN_INVALID
from prosody import HOST, OTHER_HOST
from xmpp_raw import NS_CLIENT, NS_PREAUTH, NS_STREAM, RawStream, Stanza, StreamClosed, q

VALID = "valid"
INVALID = "invalid"
REFUSED = "refused"
IGNORED = "ignored"
STREAM_ERROR = "stream-error"
APPROVED = "approved"
NOT_APPROVED = "not-approved"

NOT_WELL_FORMED = "not-well-formed"
UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
POLICY_VIOLATION = "policy-violation"

NS_STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
XML_NS = "http://www.w3.org/XML/1998/namespace"

# An `xml:*` attribute other than xml:lang/space/base/id. Prosody's parser keeps it as
# "{XML_NS}\1name" and tostring() writes `xmlns:ns1='http://www.w3.org/XML/1998/namespace'
# ns1:name='…'`, a prefix binding that Namespaces in XML forbids: a handler that parses the
# re-serialised stanza with a namespace-aware parser chokes on it (see test_hostile.py's
# test_xml_namespace_attribute_* tests). Only the IQ corpus uses them (Prosody echoes some
# presences back to the sender in that form, which our own client parser rejects).
XML_NS_ATTR_NAMES = ["foo", "base64", "token", "x"]

# Sizes.
HUGE = 64 * 1024
MAX_TOKEN = 1024


# -- character pools ---------------------------------------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
COMBINING = [chr(c) for c in range(0x300, 0x370)] + [
    "\u0489", "\u1ab0", "\u1dc0", "\u20d0", "\u20e3", "\ufe20", "\u034f"]
RTL = ["\u200f", "\u202b", "\u202e", "\u2067", "\u061c"] + \
    [chr(c) for c in range(0x5d0, 0x5eb)] + [chr(c) for c in range(0x627, 0x64b)]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
SPACES = ["\u00a0", "\u2000", "\u2028", "\u2029", "\u3000", "\u3164", " "]
ASTRAL = [chr(c) for c in range(0x1f600, 0x1f650)] + [
    "\U0001d11e", "\U00010348", "\U000e0001", "\U0010fffd", "\U0001f3f3\ufe0f\u200d\U0001f308"]
CJK = [chr(c) for c in range(0x4e00, 0x4e60)] + [chr(c) for c in range(0xac00, 0xac30)]
ODD_BMP = ["\ufffd", "\ufdd0", "\ufdef", "\uffef", "\ue000", "\uf8ff", "\ud7ff"]
C1 = [chr(c) for c in range(0x7f, 0xa0)]
XML_WS = ["\t", "\n", "\r"]
XML_SPECIAL = ["&", "<", ">", "'", '"']
UNICODE_POOL = COMBINING + RTL + ZERO_WIDTH + SPACES + ASTRAL + CJK + ODD_BMP + C1 + XML_WS

HOMOGLYPHS = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441",
              "x": "\u0445", "y": "\u0443", "A": "\u0391", "B": "\u0392", "E": "\u0395",
              "H": "\u0397", "I": "\u0399", "K": "\u039a", "M": "\u039c", "N": "\u039d",
              "O": "\u039f", "P": "\u03a1", "T": "\u03a4", "X": "\u03a7", "Z": "\u0396",
              "l": "\u04cf", "i": "\u0456", "s": "\u0455", "j": "\u0458"}

INJECTION = [
    "'; DROP TABLE prosody; --", "\" OR \"1\"=\"1", "../../../../etc/passwd", "..\\..\\boot.ini",
    "%s%s%s%n", "%d%x%p%q", "${jndi:ldap://127.0.0.1/a}", "{{7*7}}", "<script>alert(1)</script>",
    "]]>", "<![CDATA[x]]>", "&amp;", "&lt;iq/&gt;", "nil", "null", "None", "undefined", "true",
    "false", "0", "-1", "1e309", "NaN", "inf", "0x41", "[[", "]]", "%", "%z", "%b()", "\\0",
    "\\x00", "$(reboot)", "`id`", "|id", "a/b", "a@b", "a/../b", "*", "%2e%2e%2f", "\\u0000",
    "xmpp:example.test?register;preauth=AAAAAAAAAAAAAAAAAAAAAAAA", "invite_token", "_native",
    "__index", "token", "\\", "''", '""', "'\"'", "&#0;", "%00",
]

# Bytes that make a stanza not well-formed when placed inside an attribute value.
MALFORMED_BITS = (
    [f"&#{c};".encode() for c in [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 24, 27, 31]]
    + [b"&#xFFFE;", b"&#xFFFF;", b"&#xD800;", b"&#xDFFF;", b"&#x110000;", b"&#99999999;",
       b"&#x0;", b"&#x1B;"]
    + [bytes([c]) for c in [0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 24, 27, 31]]
    + [b"<", b"&", b"&foo;", b"&#;", b"&#x;", b"&#65x;", b"&amp", b"&lt"]
    + [b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x80",
       b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xc3"]
    + ["\ufffe".encode(), "\uffff".encode()]
)


def xml_value(rng: random.Random, value: str, quote: str = "'", ref_rate: float = 0.0) -> bytes:
    """`value` as the content of an attribute in `quote`s: always well-formed, with
    characters randomly written as character references (same value once parsed)."""
    out = []
    for ch in value:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == quote:
            out.append("&apos;" if quote == "'" else "&quot;")
        elif ch in "\t\n\r":
            # Raw, they would be normalised to spaces (a different value).
            out.append(f"&#{ord(ch)};" if rng.random() < 0.5 else f"&#x{ord(ch):X};")
        elif ref_rate and rng.random() < ref_rate:
            out.append(rng.choice([f"&#{ord(ch)};", f"&#x{ord(ch):x};", f"&#x{ord(ch):X};"]))
        elif ch == ">" and rng.random() < 0.5:
            out.append("&gt;")
        elif ch in "'\"" and rng.random() < 0.3:
            out.append("&apos;" if ch == "'" else "&quot;")
        else:
            out.append(ch)
    return "".join(out).encode("utf-8")


def attr_norm(value: str | None) -> str | None:
    """What an XML parser reports for an attribute that arrives with raw whitespace
    (Prosody writes \\t, \\n, \\r unescaped)."""
    if value is None:
        return None
    return value.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").replace("\n", " ")


# -- tokens ---------------------------------------------------------------------------

@dataclass
class Tok:
    """A token attribute: logical value (None: no attribute), or raw bytes that make the
    stanza not well-formed."""

    label: str
    value: str | None = None
    raw_bad: bytes | None = None     # inserted into the value: not well-formed
    real: str | None = None          # name of the real token it is (valid or not)

    @property
    def wellformed(self) -> bool:
        return self.raw_bad is None

    def attr(self, rng: random.Random, quote: str, ref_rate: float) -> bytes:
        if self.raw_bad is not None:
            base = self.value or ""
            cut = rng.randint(0, len(base))
            return (xml_value(rng, base[:cut], quote) + self.raw_bad
                    + xml_value(rng, base[cut:], quote))
        if len(self.value or "") > 4096:
            # Keep huge tokens well under the stanza size limits (refs take 4-10 bytes).
            ref_rate = min(ref_rate, 0.1)
        return xml_value(rng, self.value or "", quote, ref_rate)


def _random_text(rng: random.Random, pool, n: int) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


def near_miss(rng: random.Random, token: str) -> tuple[str, str]:
    """A string that differs from `token` in a way a sloppy comparison might miss. It
    draws the same random numbers whatever the token's characters, so that one seed gives
    the same corpus on every server (only the real tokens differ)."""
    kind = rng.choice(["append", "prepend", "case", "drop-last", "drop-first", "replace",
                       "double", "combining", "homoglyph", "fullwidth", "zero-width",
                       "rtl", "whitespace", "nfc-trap", "prefix", "truncate-half"])
    i = rng.randrange(len(token))
    if kind == "append":
        return kind, token + rng.choice(UNICODE_POOL + list(ALPHABET) + XML_SPECIAL)
    if kind == "prepend":
        return kind, rng.choice(UNICODE_POOL + list(ALPHABET) + XML_SPECIAL) + token
    # The first position at or after i (cyclically) where a test holds, without new draws.
    def spot(test) -> int | None:
        return next((j % len(token) for j in range(i, i + len(token))
                     if test(token[j % len(token)])), None)

    if kind == "case":
        j = spot(str.isalpha)
        if j is not None:
            return kind, token[:j] + token[j].swapcase() + token[j + 1:]
        return kind, token.lower() + "x"
    if kind == "drop-last":
        return kind, token[:-1]
    if kind == "drop-first":
        return kind, token[1:]
    if kind == "replace":
        ch = ALPHABET[(ALPHABET.find(token[i]) + 1 + rng.randrange(len(ALPHABET) - 1))
                      % len(ALPHABET)]
        return kind, token[:i] + ch + token[i + 1:]
    if kind == "double":
        return kind, token + token
    if kind == "combining":
        return kind, token[:i + 1] + rng.choice(COMBINING) + token[i + 1:]
    if kind == "homoglyph":
        j = spot(lambda ch: ch in HOMOGLYPHS)
        if j is not None:
            return kind, token[:j] + HOMOGLYPHS[token[j]] + token[j + 1:]
        return kind, token + "\u0430"
    if kind == "fullwidth":
        return kind, token[:i] + chr(ord(token[i]) + 0xFEE0) + token[i + 1:]
    if kind == "zero-width":
        return kind, token[:i] + rng.choice(ZERO_WIDTH) + token[i:]
    if kind == "rtl":
        step = -1 if rng.random() < 0.5 else 1
        return kind, rng.choice(["\u202e", "\u200f", "\u2067"]) + token[::step]
    if kind == "whitespace":
        before = rng.choice([" ", "\t", "\n", "\r\n", "\u00a0"])
        return kind, before + token + rng.choice(["", " ", "\n"])
    if kind == "nfc-trap":
        # A precomposed letter vs letter + combining mark.
        trap = rng.choice(["e\u0301", "\u00e9", "A\u030a", "\u212b"])
        return kind, token[:i] + trap + token[i + 1:]
    if kind == "prefix":
        return kind, token[: rng.randint(1, len(token) - 1)]
    return kind, token[: len(token) // 2]


def generate_token(rng: random.Random, real: dict[str, str], favour: str | None = None) -> Tok:
    """One token attribute from a weighted family. `real` maps names of real tokens
    (valid or not) to their values; `favour` names the real token near-misses mutate."""
    families = [
        ("near-miss", 16), ("real", 10), ("random-like", 8), ("empty", 3), ("missing", 3),
        ("huge", 3), ("boundary", 4), ("unicode", 14), ("controls", 6), ("xml-special", 9),
        ("injection", 7), ("malformed", 7), ("mixed", 10),
    ]
    family = rng.choices([f for f, _ in families], [w for _, w in families])[0]
    base = real.get(favour) if favour else None
    base = base or rng.choice(list(real.values()))
    if family == "near-miss":
        kind, value = near_miss(rng, base)
        return Tok(f"near-miss:{kind}", value)
    if family == "real":
        name = rng.choice(sorted(real))
        return Tok(f"real:{name}", real[name], real=name)
    if family == "random-like":
        return Tok("random-like", _random_text(rng, ALPHABET, rng.choice([24, 24, 23, 25, 32, 16])))
    if family == "empty":
        return Tok("empty", "")
    if family == "missing":
        return Tok("missing", None)
    if family == "huge":
        pool = rng.choice([ALPHABET, ALPHABET + "".join(CJK), "".join(UNICODE_POOL)])
        value = _random_text(rng, pool, HUGE // (3 if len(pool) > 64 else 1))
        if rng.random() < 0.3:
            value = base + value  # a real token followed by a lot
        return Tok("huge", value)
    if family == "boundary":
        n = rng.choice([MAX_TOKEN - 1, MAX_TOKEN, MAX_TOKEN + 1, 2 * MAX_TOKEN])
        value = _random_text(rng, ALPHABET, n)
        if rng.random() < 0.3:
            value = value[:-1] + "\u00e9"  # one more byte than characters
        return Tok(f"boundary:{len(value.encode())}", value)
    if family == "unicode":
        pool = rng.choice([COMBINING, RTL, ZERO_WIDTH, SPACES, ASTRAL, CJK, ODD_BMP, UNICODE_POOL])
        value = _random_text(rng, pool, rng.randint(1, 40))
        if rng.random() < 0.4:
            value = "".join(ch + rng.choice(COMBINING) for ch in value)  # zalgo-ish
        return Tok("unicode", value)
    if family == "controls":
        value = _random_text(rng, C1 + XML_WS + list("ab"), rng.randint(1, 30))
        return Tok("controls-allowed", value)
    if family == "xml-special":
        value = _random_text(rng, XML_SPECIAL + list(";#x0a") + ["&amp;", "&#38;", "]]>"],
                             rng.randint(1, 30))
        return Tok("xml-special", value)
    if family == "injection":
        return Tok("injection", rng.choice(INJECTION))
    if family == "malformed":
        bit = rng.choice(MALFORMED_BITS)
        return Tok(f"malformed:{bit[:12]!r}", rng.choice(["", base, "abc"]), raw_bad=bit)
    # mixed: a bit of everything around a real token
    parts = [rng.choice([base, _random_text(rng, UNICODE_POOL, 3), _random_text(rng, ALPHABET, 5),
                         rng.choice(INJECTION)]) for _ in range(rng.randint(2, 4))]
    return Tok("mixed", "".join(parts))


# -- cases ------------------------------------------------------------------------------

@dataclass
class Case:
    n: int
    kind: str                        # "iq" | "presence"
    labels: list[str]
    data: bytes
    expect: str
    condition: str | None = None     # REFUSED / STREAM_ERROR condition (None: any)
    iq_id: str | None = None         # the id the reply must carry (None: no id)
    reply_from: str | None = None    # expected `from` of our reply (None: absent)
    reply_to: str | None = None      # expected `to` of our reply (None: absent)
    target: str | None = None        # presence: bare JID that must (not) ask back
    xml_ns_attr: bool = False        # carries an xml:* attribute (see XML_NS_ATTR_NAMES)
    real: str | None = None          # which real token it carries, if any
    approvable: bool = False         # presence: a shape that the spec pre-approves

    def describe(self, limit: int = 400) -> str:
        text = self.data.decode("utf-8", errors="backslashreplace")
        if len(text) > limit:
            text = text[:limit] + f"… ({len(self.data)} bytes)"
        return f"#{self.n} {self.kind} [{', '.join(self.labels)}] expect {self.expect}" \
               f"{'/' + self.condition if self.condition else ''}: {text}"


def _attrs(rng: random.Random, pairs: list[tuple[str, bytes]], quote: str) -> bytes:
    return b"".join(b" " + k.encode() + b"=" + quote.encode() + v + quote.encode()
                    for k, v in pairs)


def _junk_element(rng: random.Random, depth: int = 0) -> bytes:
    ns = rng.choice(["urn:x-hostile:junk", "urn:x-hostile:" + str(rng.randint(0, 99)),
                     "http://jabber.org/protocol/nick", "jabber:x:data"])
    name = rng.choice(["x", "junk", "nick", "preauth2", "token", "a"])
    inner = b""
    if depth < 3 and rng.random() < 0.3:
        inner = _junk_element(rng, depth + 1)
    elif rng.random() < 0.3:
        inner = xml_value(rng, _random_text(rng, UNICODE_POOL + list(ALPHABET), 8), "'")
    if inner:
        return f"<{name} xmlns='{ns}'>".encode() + inner + f"</{name}>".encode()
    return f"<{name} xmlns='{ns}'/>".encode()


def _nested(rng: random.Random, depth: int) -> bytes:
    names = [rng.choice(["a", "b", "preauth", "token", "x"]) for _ in range(depth)]
    return (b"".join(f"<{n}>".encode() for n in names)
            + b"".join(f"</{n}>".encode() for n in reversed(names)))


@dataclass
class PreauthElement:
    """The `<preauth/>` element of a case and what it makes of the case."""

    data: bytes
    ours: bool                  # {urn:xmpp:pars:0}preauth
    token: Tok
    malformed: bool
    xml_ns_attr: bool
    labels: list[str] = field(default_factory=list)
    plain_token: bool = False   # carries the token in a plain `token` attribute


def preauth_element(rng: random.Random, tok: Tok, quote: str, ref_rate: float,
                    allow_content: bool = True, valid_shape: bool = False,
                    allow_xml_other: bool = True) -> PreauthElement:
    """A preauth element carrying `tok`, with random decoration. `valid_shape` keeps it a
    proper {urn:xmpp:pars:0}preauth with a plain token attribute (for positives).
    `allow_xml_other`: may carry an xml:* attribute other than lang/space/base/id."""
    labels = []
    malformed = not tok.wellformed
    xml_ns_attr = False
    name, ns_decl, ours = "preauth", f" xmlns={quote}{NS_PREAUTH}{quote}".encode(), True
    shape = "plain" if valid_shape else rng.choices(
        ["plain", "prefixed", "wrong-ns", "no-ns", "empty-ns", "wrong-name", "upper-ns"],
        [84, 5, 3, 2, 2, 2, 2])[0]
    if shape == "prefixed":
        name, ns_decl = "p:preauth", f" xmlns:p={quote}{NS_PREAUTH}{quote}".encode()
    elif shape == "wrong-ns":
        ns = rng.choice(["urn:xmpp:pars:1", "urn:xmpp:pars:0 ", "urn:xmpp:pars", "urn:xmpp:invite",
                         "urn:xmpp:ibr-token:0", "urn:xmpp:pars:0:preauth"])
        ns_decl, ours = f" xmlns={quote}{ns}{quote}".encode(), False
    elif shape == "no-ns":
        ns_decl, ours = b"", False
    elif shape == "empty-ns":
        ns_decl, ours = f" xmlns={quote}{quote}".encode(), False
    elif shape == "wrong-name":
        name, ours = rng.choice(["Preauth", "preauth2", "token", "pre-auth", "register"]), False
    elif shape == "upper-ns":
        ns_decl, ours = f" xmlns={quote}URN:XMPP:PARS:0{quote}".encode(), False
    if shape != "plain":
        labels.append(f"element:{shape}")

    attrs: list[tuple[str, bytes]] = []
    token_mode = "plain" if valid_shape else rng.choices(
        ["plain", "prefixed-only", "plain+prefixed", "duplicate", "duplicate-xmlns"],
        [90, 3, 4, 2, 1])[0]
    if tok.value is not None or tok.raw_bad is not None:
        value = tok.attr(rng, quote, ref_rate)
        if token_mode in ("plain", "plain+prefixed", "duplicate", "duplicate-xmlns"):
            attrs.append(("token", value))
        if token_mode in ("prefixed-only", "plain+prefixed"):
            attrs.append(("xmlns:t", NS_PREAUTH.encode()))
            attrs.append(("t:token", value if token_mode == "prefixed-only"
                          else xml_value(rng, "AAAAAAAAAAAAAAAAAAAAAAAA", quote)))
        if token_mode == "duplicate":
            attrs.append(("token", xml_value(rng, rng.choice(["", "x", tok.value or ""]), quote)))
            malformed = True
        if token_mode == "duplicate-xmlns":
            if ns_decl:
                ns_decl += ns_decl  # the same namespace declaration twice
                malformed = True
            else:
                token_mode = "plain"
    else:
        if token_mode == "duplicate":
            token_mode = "plain"
    if token_mode != "plain":
        labels.append(f"token-attr:{token_mode}")
    if token_mode == "prefixed-only":
        tok = Tok(tok.label + "+prefixed-only", None)

    # Extra attributes (each kind at most once: a repeat would be a duplicate attribute).
    extras = set()
    for _ in range(0 if valid_shape and rng.random() < 0.5 else rng.choice([0, 0, 0, 1, 2])):
        extra = rng.choice(["plain", "ns", "xml:lang", "xml:space", "xml-other", "ns-dup"])
        if extra in extras or (extra in ("xml-other", "ns-dup") and valid_shape) \
                or (extra == "xml-other" and not allow_xml_other):
            continue
        extras.add(extra)
        if extra == "plain":
            value = _random_text(rng, UNICODE_POOL + list(ALPHABET), 6)
            attrs.append((rng.choice(["id", "type", "to", "from", "Token", "tokenx", "jid"]),
                          xml_value(rng, value, quote)))
        elif extra == "ns":
            attrs.append(("xmlns:z", b"urn:x-hostile:attr"))
            attrs.append(("z:token", xml_value(rng, "zzz", quote)))
        elif extra == "xml:lang":
            lang = rng.choice(["de", "", "x-\u00e9", "en-GB"])
            attrs.append(("xml:lang", xml_value(rng, lang, quote)))
        elif extra == "xml:space":
            attrs.append(("xml:space", b"preserve"))
        elif extra == "xml-other":
            attrs.append((f"xml:{rng.choice(XML_NS_ATTR_NAMES)}", b"1"))
            xml_ns_attr = True
        elif extra == "ns-dup":
            # Two prefixes for one namespace, same local name: a duplicate attribute.
            attrs.append(("xmlns:d1", b"urn:x-hostile:dup"))
            attrs.append(("xmlns:d2", b"urn:x-hostile:dup"))
            attrs.append(("d1:k", b"1"))
            attrs.append(("d2:k", b"2"))
            malformed = True
        labels.append(f"attr:{extra}")
    rng.shuffle(attrs)

    # Content.
    content = b""
    if allow_content and rng.random() < 0.25:
        what = rng.choice(["text", "cdata", "nested", "deep", "junk", "preauth-inside"])
        if what == "text":
            content = xml_value(rng, _random_text(rng, UNICODE_POOL + list(ALPHABET), 20), quote)
        elif what == "cdata":
            content = b"<![CDATA[" + _random_text(rng, list("<>&'\"ab"), 10).encode() + b"]]>"
        elif what == "nested":
            content = _junk_element(rng)
        elif what == "deep":
            content = _nested(rng, rng.randint(10, 120))
        elif what == "junk":
            content = b"".join(_junk_element(rng) for _ in range(rng.randint(2, 20)))
        else:
            content = f"<preauth xmlns='{NS_PREAUTH}' token='AAAA'/>".encode()
        labels.append(f"content:{what}")

    head = b"<" + name.encode() + ns_decl + _attrs(rng, attrs, quote)
    data = head + (b">" + content + b"</" + name.encode() + b">" if content else b"/>")
    plain = token_mode in ("plain", "plain+prefixed") and tok.value is not None
    return PreauthElement(data, ours, tok, malformed, xml_ns_attr, labels, plain)


ID_POOL = ["", "1", "a" * 2000, "id with spaces", "\u202eevil", "e\u0301", "<&>'\"", "\U0001f600",
           "hostile-probe-x", "\t\n"]


def iq_case(n: int, rng: random.Random, real: dict[str, str], valid_names: set[str]) -> Case:
    """One hostile preauth IQ on an unauthenticated stream."""
    labels: list[str] = []
    quote = rng.choice("''\"")
    ref_rate = rng.choice([0.0, 0.0, 0.0, 0.2, 1.0])
    if ref_rate:
        labels.append(f"refs:{ref_rate}")
    tok = generate_token(rng, real, favour=rng.choice(sorted(valid_names)))
    labels.append(tok.label)
    pre = preauth_element(rng, tok, quote, ref_rate)
    labels += pre.labels
    malformed = pre.malformed
    xml_ns_attr = pre.xml_ns_attr

    # IQ attributes.
    attrs: list[tuple[str, bytes]] = []
    iq_type = rng.choices(["set", "get", "result", "error", None, "SET", "foo", ""],
                          [70, 20, 2, 2, 2, 1, 2, 1])[0]
    if iq_type is not None:
        attrs.append(("type", xml_value(rng, iq_type, quote)))
    if iq_type not in ("set", "get"):
        labels.append(f"type:{iq_type}")
    iq_id: str | None = f"h{n}"
    r = rng.random()
    if r < 0.05:
        iq_id = None
        labels.append("id:missing")
    elif r < 0.15:
        iq_id = rng.choice(ID_POOL)
        labels.append("id:odd")
    if iq_id is not None:
        attrs.append(("id", xml_value(rng, iq_id, quote, ref_rate)))
    to_kind = rng.choices(["none", "host", "host-upper", "other-host", "unknown-host", "user",
                           "host-resource", "malformed", "empty"],
                          [62, 22, 4, 3, 2, 2, 2, 2, 1])[0]
    to_value = {"none": None, "host": HOST, "host-upper": HOST.upper(), "other-host": OTHER_HOST,
                "unknown-host": "unknown.invalid", "user": f"someone@{HOST}",
                "host-resource": f"{HOST}/res",
                "malformed": rng.choice(["@@", "a@b@c", "@" + HOST, "x@/", "a" * 1100 + "@" + HOST]),
                "empty": ""}[to_kind]
    if to_value is not None:
        attrs.append(("to", xml_value(rng, to_value, quote)))
    if to_kind != "none":
        labels.append(f"to:{to_kind}")
    from_kind = rng.choices(["none", "valid", "malformed"], [92, 6, 2])[0]
    from_value = {"none": None, "valid": "mallory@evil.invalid/res", "malformed": "@@"}[from_kind]
    if from_value is not None:
        attrs.append(("from", xml_value(rng, from_value, quote)))
        labels.append(f"from:{from_kind}")
    if rng.random() < 0.1:
        attrs.append(("xml:lang", xml_value(rng, rng.choice(["de", "he", "", "\u00e9"]), quote)))
    if rng.random() < 0.02:
        attrs.append(("xml:foo", b"1"))
        xml_ns_attr = True
        labels.append("iq-attr:xml-other")
    if iq_id is not None and rng.random() < 0.02:
        attrs.append(("id", b"dup"))
        malformed = True
        labels.append("iq-attr:duplicate-id")
    rng.shuffle(attrs)

    top, top_ns = "iq", b""
    top_kind = rng.choices(["plain", "explicit-ns", "prefixed", "server-ns"], [92, 3, 3, 2])[0]
    if top_kind == "explicit-ns":
        top_ns = f" xmlns={quote}jabber:client{quote}".encode()
    elif top_kind == "prefixed":
        top, top_ns = "c:iq", f" xmlns:c={quote}jabber:client{quote}".encode()
    elif top_kind == "server-ns":
        top_ns = f" xmlns={quote}jabber:server{quote}".encode()
    if top_kind != "plain":
        labels.append(f"top:{top_kind}")

    before = b""
    first_is_preauth = True
    b = rng.random()
    if b < 0.04:
        before = _junk_element(rng)
        first_is_preauth = False
        labels.append("child-before")
    elif b < 0.10:
        before = rng.choice([b" ", b"\n  ", b"text", "\u202e\u00e9".encode()])
        labels.append("text-before")
    after = b""
    if rng.random() < 0.15:
        what = rng.choice(["junk", "real-preauth", "many"])
        if what == "junk":
            after = _junk_element(rng)
        elif what == "real-preauth":
            good = rng.choice(sorted(valid_names))
            after = f"<preauth xmlns='{NS_PREAUTH}' token='{real[good]}'/>".encode()
        else:
            after = b"".join(_junk_element(rng) for _ in range(rng.randint(5, 50)))
        labels.append(f"after:{what}")
    junk_markup = b""
    if rng.random() < 0.02:
        junk_markup = rng.choice([b"<!-- comment -->", b"<?pi data?>", b"<!DOCTYPE x>",
                                  b"<!ENTITY e 'x'>"])
        malformed = True
        labels.append("markup")
    oversize = rng.random() < 0.005
    if oversize:
        after += b"<pad xmlns='urn:x-hostile:pad'>" + b"x" * (600 * 1024) + b"</pad>"
        labels.append("oversize")

    data = (b"<" + top.encode() + top_ns + _attrs(rng, attrs, quote) + b">" + junk_markup + before
            + pre.data + after + b"</" + top.encode() + b">")

    case = Case(n, "iq", labels, data, INVALID, iq_id=iq_id, xml_ns_attr=xml_ns_attr,
                real=pre.token.real)
    # What Prosody does with it, in its order of checks.
    if malformed:
        case.expect, case.condition = STREAM_ERROR, NOT_WELL_FORMED
    elif oversize:
        case.expect, case.condition = STREAM_ERROR, POLICY_VIOLATION
    elif to_kind in ("malformed", "empty") or from_kind == "malformed":
        # The router checks addresses before it looks at the namespace.
        if iq_type in ("result", "error"):
            case.expect = IGNORED
        else:
            case.expect, case.condition = REFUSED, "jid-malformed"
    elif top_kind == "server-ns":
        case.expect, case.condition = STREAM_ERROR, UNSUPPORTED_STANZA_TYPE
    elif iq_type in ("result", "error"):
        case.expect = IGNORED
    elif iq_type not in ("set", "get"):
        case.expect, case.condition = REFUSED, "service-unavailable"
    elif to_kind in ("unknown-host", "user", "host-resource", "other-host"):
        # other-host: our handler on other.test refuses a stream opened for example.test.
        case.expect, case.condition = REFUSED, "service-unavailable"
    elif not first_is_preauth or not pre.ours:
        case.expect, case.condition = REFUSED, "service-unavailable"
    elif pre.token.real in valid_names and pre.token.value == real[pre.token.real]:
        case.expect = VALID
    else:
        case.expect = INVALID
    if case.expect in (VALID, INVALID):
        case.reply_from = HOST if to_kind in ("host", "host-upper") else None
        case.reply_to = from_value
    return case


@dataclass
class PresenceWorld:
    """Who is who for the presence corpus."""

    sender: str                       # username that sends everything (logged in)
    targets: dict[str, str]           # label → `to` value (None-able via "none")
    target_bare: dict[str, str | None]  # label → bare JID whose ask-back is watched
    real: dict[str, str]              # real token name → value
    owner: dict[str, str]             # real token name → target label it is valid for
    base_targets: list[str] = field(default_factory=list)  # labels negatives mostly use
    reserved: set[str] = field(default_factory=set)  # labels of the positives' accounts

    def pick_target(self, rng: random.Random) -> str:
        if self.base_targets and rng.random() < 0.85:
            return rng.choice(self.base_targets)
        return rng.choice(sorted(self.targets))


def presence_case(n: int, rng: random.Random, world: PresenceWorld,
                  positive: tuple[str, str] | None = None) -> Case:
    """One subscription presence from the logged-in sender. With `positive` =
    (target label, token name) it is a decorated but valid pre-approved subscription."""
    labels: list[str] = []
    quote = rng.choice("''\"")
    ref_rate = rng.choice([0.0, 0.0, 0.2, 1.0])
    if positive:
        target, token_name = positive
        tok = Tok(f"real:{token_name}", world.real[token_name], real=token_name)
        labels.append("POSITIVE")
    else:
        target = world.pick_target(rng)
        tok = generate_token(rng, world.real, favour=rng.choice(sorted(world.real)))
    labels.append(tok.label)
    labels.append(f"to:{target}")
    # No xml:* attributes here: Prosody echoes some presences back to the sender (to
    # itself, directed to its own JID), serialised with a prefix bound to the XML
    # namespace that a namespace-aware client parser (ours: expat) rejects.
    pre = preauth_element(rng, tok, quote, ref_rate, valid_shape=bool(positive),
                          allow_xml_other=False)
    labels += pre.labels
    malformed = pre.malformed

    attrs: list[tuple[str, bytes]] = []
    ptype = "subscribe" if positive else rng.choices(
        ["subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", None, "error",
         "SUBSCRIBE", "unavailable"], [80, 3, 3, 2, 2, 3, 2, 3, 2])[0]
    if target in world.reserved and ptype in ("subscribed", "unsubscribe", "unsubscribed"):
        # These change the sender's side of the roster (a `subscribed` stores a
        # pre-approval, so the target's ask-back would be approved silently): keep the
        # accounts reserved for positives in a state where an approval is observable.
        ptype = "subscribe"
    if ptype == "unavailable" and world.targets[target] in (None, f"{world.sender}@{HOST}"):
        # That would make the sender unavailable: it would stop receiving the ask-back
        # that shows a pre-approval.
        ptype = "subscribe"
    if ptype == "error" and world.targets[target] in (None, f"{world.sender}@{HOST}"):
        # Prosody 0.12.3's mod_presence raises on an error presence to the sender's own
        # account (error_reply on an error stanza: a traceback, not ours). Not our input.
        ptype = "subscribed"
    if ptype is not None:
        attrs.append(("type", xml_value(rng, ptype, quote)))
    if ptype != "subscribe":
        labels.append(f"type:{ptype}")
    to_value = world.targets[target]
    if to_value is not None:
        attrs.append(("to", xml_value(rng, to_value, quote, ref_rate)))
    if rng.random() < 0.2:
        attrs.append(("id", xml_value(rng, rng.choice(ID_POOL), quote)))
    if rng.random() < 0.05:
        attrs.append(("from", xml_value(rng, rng.choice([f"alice@{HOST}", "@@", "x@y/z"]), quote)))
        labels.append("from")
    if rng.random() < 0.1:
        attrs.append(("xml:lang", b"de"))
    if not positive and ptype is not None and rng.random() < 0.02:
        attrs.append(("type", b"subscribe"))
        malformed = True
        labels.append("attr:duplicate-type")
    rng.shuffle(attrs)

    placement = "only" if not positive or rng.random() < 0.5 else "after-others"
    if not positive:
        placement = rng.choices(["only", "after-others", "nested", "second-preauth",
                                 "tokenless-first"], [70, 15, 5, 5, 5])[0]
    children = []
    if placement == "only":
        children = [pre.data]
    elif placement == "after-others":
        children = [_junk_element(rng) for _ in range(rng.randint(1, 4))] + [pre.data]
        if rng.random() < 0.5:
            children.append(_junk_element(rng))
    elif placement == "nested":
        children = [b"<x xmlns='urn:x-hostile:wrap'>" + pre.data + b"</x>"]
    elif placement == "second-preauth":
        children = [f"<preauth xmlns='{NS_PREAUTH}' token='AAAAAAAAAAAAAAAAAAAAAAAA'/>".encode(),
                    pre.data]
    else:
        children = [f"<preauth xmlns='{NS_PREAUTH}'/>".encode(), pre.data]
    if placement != "only":
        labels.append(f"placement:{placement}")
    junk_markup = b""
    if not positive and rng.random() < 0.015:
        junk_markup = rng.choice([b"<!-- c -->", b"<?pi?>"])
        malformed = True
        labels.append("markup")
    oversize = not positive and rng.random() < 0.004
    if oversize:
        children.append(b"<pad xmlns='urn:x-hostile:pad'>" + b"x" * (300 * 1024) + b"</pad>")
        labels.append("oversize")
    top_server = not positive and rng.random() < 0.01
    top_ns = f" xmlns={quote}jabber:server{quote}".encode() if top_server else b""
    if top_server:
        labels.append("top:server-ns")

    data = (b"<presence" + top_ns + _attrs(rng, attrs, quote) + b">" + junk_markup
            + b"".join(children) + b"</presence>")
    case = Case(n, "presence", labels, data, NOT_APPROVED, target=world.target_bare[target],
                xml_ns_attr=pre.xml_ns_attr, real=pre.token.real,
                approvable=(ptype == "subscribe" and placement in ("only", "after-others")
                            and pre.ours and pre.plain_token))
    if malformed:
        case.expect, case.condition = STREAM_ERROR, NOT_WELL_FORMED
    elif oversize:
        case.expect, case.condition = STREAM_ERROR, POLICY_VIOLATION
    elif top_server and target != "malformed":
        # (A malformed `to` is answered with jid-malformed before the namespace matters.)
        case.expect, case.condition = STREAM_ERROR, UNSUPPORTED_STANZA_TYPE
    elif positive:
        case.expect = APPROVED
    return case


# -- running ------------------------------------------------------------------------------

@dataclass
class Outcome:
    received: list[Stanza]
    closed: bool = False
    condition: str | None = None      # stream error condition when closed


def stream_error_condition(stanza: Stanza) -> str | None:
    for child in stanza.el:
        if child.tag.startswith("{" + NS_STREAMS_ERR + "}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


class Exchanger:
    """One client stream to the server, reopened whenever the server closes it.

    `exchange(data)` sends the bytes followed by a probe IQ and returns everything the
    server sent before the probe's answer (stanzas on one stream are handled in order), or
    the stream error if it closed the stream. With `login` the stream is authenticated,
    bound and available (initial presence) first, and whatever that triggers is drained.
    """

    def __init__(self, port: int, login: tuple[str, str] | None = None, timeout: float = 10.0):
        self.port = port
        self.login = login
        self.timeout = timeout
        self.stream: RawStream | None = None
        self.connects = 0
        self.probes = 0

    def _probe_xml(self) -> tuple[str, bytes]:
        self.probes += 1
        probe_id = f"hostile-probe-{self.probes}"
        to = f" to='{HOST}'" if self.login else ""
        xml = f"<iq type='get' id='{probe_id}'{to}><ping xmlns='urn:xmpp:ping'/></iq>"
        return probe_id, xml.encode()

    def _connect(self) -> None:
        s = RawStream(self.port, timeout=self.timeout)
        self.connects += 1
        if self.login:
            s.login(*self.login)
            s.send("<presence/>")
            self.stream = s
            out = self.exchange(b"")
            assert not out.closed, "stream closed right after login"
        else:
            s.open()
            self.stream = s

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    def exchange(self, data: bytes) -> Outcome:
        if self.stream is None:
            self._connect()
        s = self.stream
        probe_id, probe = self._probe_xml()
        try:
            s.sock.sendall(data + probe)
        except OSError:
            pass  # closed while we were writing: read what it said
        deadline = time.monotonic() + self.timeout
        received: list[Stanza] = []
        while True:
            while s.pending:
                stanza = s.pending.pop(0)
                if stanza.tag == q(NS_CLIENT, "iq") and stanza.id == probe_id:
                    return Outcome(received)
                received.append(stanza)
            if s.reader.closed:
                break
            try:
                s._read_more(deadline)
            except TimeoutError as e:  # (a subclass of OSError: first)
                self.close()
                raise TimeoutError(f"no answer to the probe in {self.timeout}s; got "
                                   + " ".join(str(x)[:200] for x in received)) from e
            except (StreamClosed, OSError):
                break
        self.close()
        condition = None
        for stanza in received:
            if stanza.tag == q(NS_STREAM, "error"):
                condition = stream_error_condition(stanza)
        return Outcome(received, closed=True, condition=condition)


def _error_of(stanza: Stanza) -> tuple[str | None, str | None, str | None]:
    err = stanza.error()
    return (err.type, err.condition, err.text) if err else (None, None, None)


def check_iq(case: Case, out: Outcome) -> str | None:
    """Failure message, or None when the outcome is the expected one."""
    if case.expect == STREAM_ERROR:
        if not out.closed:
            return f"expected a stream error ({case.condition}), stream stayed open; got " \
                   + " ".join(str(s)[:200] for s in out.received)
        if case.condition and out.condition != case.condition:
            return f"expected stream error {case.condition}, got {out.condition}"
        return None
    if out.closed:
        return f"stream closed unexpectedly ({out.condition}): " \
               + " ".join(str(s)[:200] for s in out.received)
    replies = [s for s in out.received if s.tag == q(NS_CLIENT, "iq")]
    others = [s for s in out.received if s.tag != q(NS_CLIENT, "iq")]
    if others:
        return "unexpected elements: " + " ".join(str(s)[:200] for s in others)
    if case.expect == IGNORED:
        return (None if not replies else "expected no reply, got "
                + " ".join(str(s)[:200] for s in replies))
    if len(replies) != 1:
        return f"expected exactly one reply, got {len(replies)}: " \
               + " ".join(str(s)[:200] for s in replies)
    r = replies[0]
    if r.type == "result" and case.expect != VALID:
        return f"RESULT FOR A BAD TOKEN: {r}"
    if attr_norm(r.id) != attr_norm(case.iq_id):
        return f"reply id {r.id!r} != request id {case.iq_id!r}: {r}"
    etype, cond, text = _error_of(r)
    if case.expect == VALID:
        if r.type != "result" or len(r.el):
            return f"expected an empty result, got {r}"
    elif case.expect == INVALID:
        if (r.type, etype, cond, text) != ("error", "cancel", "item-not-found", TOKEN_INVALID):
            return f"expected cancel/item-not-found '{TOKEN_INVALID}', got {r}"
    elif case.expect == REFUSED:
        if r.type != "error" or (case.condition and cond != case.condition):
            return f"expected an error {case.condition}, got {r}"
        return None
    if r.get("from") != case.reply_from:
        return f"reply from {r.get('from')!r}, expected {case.reply_from!r}: {r}"
    if r.get("to") != case.reply_to:
        return f"reply to {r.get('to')!r}, expected {case.reply_to!r}: {r}"
    return None


def _bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def check_presence(case: Case, out: Outcome) -> str | None:
    if case.expect == STREAM_ERROR:
        if not out.closed:
            return f"expected a stream error ({case.condition}), stream stayed open"
        if case.condition and out.condition != case.condition:
            return f"expected stream error {case.condition}, got {out.condition}"
        return None
    if out.closed:
        return f"stream closed unexpectedly ({out.condition}): " \
               + " ".join(str(s)[:200] for s in out.received)
    asked_back = [s for s in out.received
                  if s.tag == q(NS_CLIENT, "presence") and s.type == "subscribe"
                  and case.target is not None and _bare(s.get("from")) == case.target]
    if case.expect == APPROVED and not asked_back:
        return f"valid token did not pre-approve: no subscribe from {case.target}; got " \
               + " ".join(str(s)[:200] for s in out.received)
    if case.expect == NOT_APPROVED and asked_back:
        return f"BAD TOKEN PRE-APPROVED the subscription to {case.target}: {asked_back[0]}"
    errors = [s for s in out.received if s.tag == q(NS_CLIENT, "iq") and s.type == "error"]
    if errors:
        return "unexpected IQ error: " + str(errors[0])
    return None


@dataclass
class Report:
    kind: str
    seed: int
    tried: int = 0
    outcomes: Counter = field(default_factory=Counter)
    families: Counter = field(default_factory=Counter)
    reconnects: int = 0
    xml_ns_cases: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.kind}: {self.tried} stanzas ({self.bytes_sent / 1e6:.1f} MB) in "
                f"{self.seconds:.1f}s, seed {self.seed}; expected outcomes "
                f"{dict(sorted(self.outcomes.items()))}; connections {self.reconnects}; "
                f"with xml:* attributes {self.xml_ns_cases}; failures {len(self.failures)}")


def run(cases, exchanger: Exchanger, checker, report: Report, max_failures: int = 25) -> Report:
    start = time.monotonic()
    for case in cases:
        try:
            out = exchanger.exchange(case.data)
        except Exception as e:  # noqa: BLE001 - a timeout, or our parser choking on a reply
            exchanger.close()
            report.tried += 1
            report.failures.append(f"{case.describe()}\n    → {e!r}")
            if len(report.failures) >= max_failures:
                break
            continue
        failure = checker(case, out)
        report.tried += 1
        report.bytes_sent += len(case.data)
        report.outcomes[case.expect] += 1
        report.families[case.labels[0]] += 1
        report.xml_ns_cases += case.xml_ns_attr
        if failure:
            report.failures.append(f"{case.describe()}\n    → {failure}")
            if len(report.failures) >= max_failures:
                break
    report.reconnects = exchanger.connects
    report.seconds = time.monotonic() - start
    return report

