//! Stanza models for this module, parsed and built with quick-xml: the XEP-0445 / XEP-0401
//! preauth IQ, the XEP-0379 subscription presence, replies shaped like Prosody's
//! `util.stanza.reply` / `error_reply`, and the two `register` stream features.

use std::fmt;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::error::Error;
use crate::ns;

/// RFC 6120 §8.3.2 error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Do not retry.
    Cancel,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3 defined conditions used by this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Malformed request.
    BadRequest,
    /// Token unknown, expired or used (XEP-0445 §4).
    ItemNotFound,
    /// Encryption required, or throttled.
    PolicyViolation,
    /// Wrong host for this stream.
    ServiceUnavailable,
    /// A registration refused (as mod_register_ibr replies).
    NotAcceptable,
}

impl Condition {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::ItemNotFound => "item-not-found",
            Condition::PolicyViolation => "policy-violation",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::NotAcceptable => "not-acceptable",
        }
    }
}

/// Why a stanza could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not the element this parser handles: let other handlers see it.
    NotMine,
    /// Ours, but not well-formed XML.
    Malformed(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotMine => f.write_str("not a preauth stanza"),
            ParseError::Malformed(why) => write!(f, "malformed stanza: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The addressing of a request, as needed to build its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// Top element name (`iq`, `presence`).
    pub name: String,
    /// `id` attribute.
    pub id: Option<String>,
    /// `type` attribute.
    pub kind: Option<String>,
    /// `from` attribute.
    pub from: Option<String>,
    /// `to` attribute.
    pub to: Option<String>,
}

/// A `<iq><preauth xmlns='urn:xmpp:pars:0' token='…'/></iq>` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreauthIq {
    /// Addressing of the IQ.
    pub header: Header,
    /// The `token` attribute, if present.
    pub token: Option<String>,
}

/// An XML element for replies and features: attributes in order, `xmlns` as an attribute
/// (as Prosody's `util.stanza` keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Attributes in document order; the namespace is the `xmlns` attribute.
    pub attrs: Vec<(String, String)>,
    /// Child nodes.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data.
    Text(String),
}

impl Element {
    /// A childless element with the given attributes.
    pub fn new(name: &str, attrs: &[(&str, &str)]) -> Self {
        Element {
            name: name.to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            children: Vec::new(),
        }
    }

    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Serialises the element (attribute values and text escaped).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out);
        out
    }

    fn write_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            out.push_str(&quick_xml::escape::escape(v.as_str()));
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_xml(out),
                Node::Text(t) => out.push_str(&quick_xml::escape::escape(t.as_str())),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

fn malformed(e: impl fmt::Display) -> ParseError {
    ParseError::Malformed(e.to_string())
}

fn is_ns(res: &ResolveResult<'_>, ns: &str) -> bool {
    matches!(res, ResolveResult::Bound(n) if n.as_ref() == ns)
}

/// Exact attribute value: entities decoded, no whitespace normalisation (tokens are
/// opaque exact strings).
fn attr_value(raw: &str) -> Result<String, ParseError> {
    Ok(quick_xml::escape::unescape(raw)
        .map_err(malformed)?
        .into_owned())
}

/// Unprefixed attributes of `e` by local name (`xmlns` declarations skipped). Later
/// duplicates are an XML error and reported as malformed.
fn plain_attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ParseError> {
    let mut found = None;
    for a in e.attributes() {
        let a = a.map_err(malformed)?;
        if a.key.as_ref() == name {
            found = Some(attr_value(&a.value)?);
        }
    }
    Ok(found)
}

fn header_of(e: &BytesStart<'_>) -> Result<Header, ParseError> {
    Ok(Header {
        name: e.local_name().as_ref().to_owned(),
        id: plain_attr(e, "id")?,
        kind: plain_attr(e, "type")?,
        from: plain_attr(e, "from")?,
        to: plain_attr(e, "to")?,
    })
}

/// Reads the top element and its first child element (a start or empty tag), resolving
/// namespaces. Returns the header, the child's namespace match and the child's token.
fn top_and_first_child(
    xml: &str,
    top_name: &str,
    child_first_only: bool,
) -> Result<(Header, Option<String>), ParseError> {
    let mut reader = NsReader::from_str(xml);
    let mut header: Option<Header> = None;
    let mut depth = 0usize;
    loop {
        let (res, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if header.is_none() {
                    if e.local_name().as_ref() != top_name {
                        return Err(ParseError::NotMine);
                    }
                    header = Some(header_of(e)?);
                    if empty {
                        return Err(ParseError::NotMine);
                    }
                    depth = 1;
                    continue;
                }
                if depth == 1 {
                    if is_ns(&res, ns::PARS) && e.local_name().as_ref() == "preauth" {
                        let token = plain_attr(e, "token")?;
                        let h = header.take().unwrap_or_default();
                        return Ok((h, token));
                    }
                    if child_first_only {
                        return Err(ParseError::NotMine);
                    }
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Err(ParseError::NotMine);
                }
            }
            Event::Eof => {
                return Err(if header.is_some() {
                    ParseError::Malformed("unexpected end".into())
                } else {
                    ParseError::NotMine
                })
            }
            _ => {}
        }
    }
}

/// Parses a serialised IQ whose first child element is `{urn:xmpp:pars:0}preauth`.
pub fn parse_preauth_iq(xml: &str) -> Result<PreauthIq, ParseError> {
    let (header, token) = top_and_first_child(xml, "iq", true)?;
    Ok(PreauthIq { header, token })
}

/// Parses a serialised `<presence type='subscribe'>` carrying
/// `<preauth xmlns='urn:xmpp:pars:0' token='…'/>` (XEP-0379 §3) and returns the token.
/// Anything else is [`ParseError::NotMine`].
pub fn parse_subscribe_token(xml: &str) -> Result<String, ParseError> {
    let (header, token) = top_and_first_child(xml, "presence", false)?;
    if header.kind.as_deref() != Some("subscribe") {
        return Err(ParseError::NotMine);
    }
    token.ok_or(ParseError::NotMine)
}

/// `st.reply(orig)`: same name and id, `from`/`to` swapped, IQ type `result`.
pub fn reply(orig: &Header) -> Element {
    let mut attrs = Vec::with_capacity(4);
    if let Some(to) = &orig.from {
        attrs.push(("to".to_owned(), to.clone()));
    }
    if let Some(from) = &orig.to {
        attrs.push(("from".to_owned(), from.clone()));
    }
    if let Some(id) = &orig.id {
        attrs.push(("id".to_owned(), id.clone()));
    }
    let kind = if orig.name == "iq" {
        "result".to_owned()
    } else {
        orig.kind.clone().unwrap_or_default()
    };
    attrs.push(("type".to_owned(), kind));
    Element {
        name: orig.name.clone(),
        attrs,
        children: Vec::new(),
    }
}

/// `st.error_reply(orig, type, condition, text)`.
pub fn error_reply(orig: &Header, kind: ErrorType, condition: Condition, text: &str) -> Element {
    let mut r = reply(orig);
    if let Some(t) = r.attrs.iter_mut().find(|(k, _)| k == "type") {
        t.1 = "error".to_owned();
    }
    let mut error = Element::new("error", &[("type", kind.as_str())]);
    error.children.push(Node::Element(Element::new(
        condition.as_str(),
        &[("xmlns", ns::STANZAS)],
    )));
    let mut text_el = Element::new("text", &[("xmlns", ns::STANZAS)]);
    text_el.children.push(Node::Text(text.to_owned()));
    error.children.push(Node::Element(text_el));
    r.children.push(Node::Element(error));
    r
}

/// The error type and condition a refusal is reported with (SPEC §4.2).
pub fn error_condition(e: Error) -> (ErrorType, Condition) {
    match e {
        Error::TokenInvalid => (ErrorType::Cancel, Condition::ItemNotFound),
        Error::EncryptionRequired => (ErrorType::Modify, Condition::PolicyViolation),
        Error::Throttled => (ErrorType::Wait, Condition::PolicyViolation),
        Error::WrongHost => (ErrorType::Cancel, Condition::ServiceUnavailable),
        Error::BadRequest => (ErrorType::Modify, Condition::BadRequest),
        Error::NoInvite
        | Error::TokenUsed
        | Error::WrongUsername
        | Error::WrongResetUsername
        | Error::Unavailable => (ErrorType::Modify, Condition::NotAcceptable),
    }
}

/// The reply to a preauth request: `result` when the token is valid, else the error
/// for the refusal.
pub fn preauth_reply<T>(orig: &Header, outcome: &Result<T, Error>) -> Element {
    match outcome {
        Ok(_) => reply(orig),
        Err(e) => {
            let (kind, condition) = error_condition(*e);
            error_reply(orig, kind, condition, e.text())
        }
    }
}

/// The stream features, in the order clients expect: XEP-0401's legacy one first.
pub fn register_features() -> [Element; 2] {
    [
        // COMPAT: urn:xmpp:invite is for Conversations <= 2.18, yaxim and Siskin.
        Element::new("register", &[("xmlns", ns::INVITE)]),
        Element::new("register", &[("xmlns", ns::IBR_TOKEN)]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_simple() {
        // XEP-0401 §5.2 example, as Prosody serialises it.
        let iq = parse_preauth_iq(
            "<iq type='set' to='example.com' id='preauth1'><preauth xmlns='urn:xmpp:pars:0' token='1ZL5eQaUpJb8GSyY4ebnQ6v6'/></iq>",
        )
        .unwrap();
        assert_eq!(iq.token.as_deref(), Some("1ZL5eQaUpJb8GSyY4ebnQ6v6"));
        assert_eq!(iq.header.id.as_deref(), Some("preauth1"));
        assert_eq!(iq.header.to.as_deref(), Some("example.com"));
        assert_eq!(iq.header.kind.as_deref(), Some("set"));
    }

    #[test]
    fn test_prefixed_namespace() {
        let iq = parse_preauth_iq(
            "<iq type='get' id='a'><p:preauth xmlns:p='urn:xmpp:pars:0' token='T'/></iq>",
        )
        .unwrap();
        assert_eq!(iq.token.as_deref(), Some("T"));
    }

    #[test]
    fn test_escaped_token_is_exact() {
        let iq = parse_preauth_iq(
            "<iq type='set' id='a'><preauth xmlns='urn:xmpp:pars:0' token='a&amp;b&#10;c'/></iq>",
        )
        .unwrap();
        assert_eq!(iq.token.as_deref(), Some("a&b\nc"));
    }

    #[test]
    fn test_missing_token() {
        let iq = parse_preauth_iq("<iq type='set' id='a'><preauth xmlns='urn:xmpp:pars:0'/></iq>")
            .unwrap();
        assert_eq!(iq.token, None);
    }

    #[test]
    fn test_invalid_wrong_namespace() {
        assert_eq!(
            parse_preauth_iq(
                "<iq type='set' id='a'><preauth xmlns='urn:xmpp:pars:1' token='T'/></iq>"
            ),
            Err(ParseError::NotMine)
        );
        assert_eq!(
            parse_preauth_iq("<iq type='set' id='a'><preauth token='T'/></iq>"),
            Err(ParseError::NotMine)
        );
    }

    #[test]
    fn test_invalid_not_first_child() {
        assert_eq!(
            parse_preauth_iq(
                "<iq type='set' id='a'><x xmlns='y'/><preauth xmlns='urn:xmpp:pars:0' token='T'/></iq>"
            ),
            Err(ParseError::NotMine)
        );
    }

    #[test]
    fn test_invalid_malformed() {
        assert!(matches!(
            parse_preauth_iq(
                "<iq type='set' id='a'><preauth xmlns='urn:xmpp:pars:0' token='T' token='U'/></iq>"
            ),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            parse_preauth_iq("<iq type='set' id='a'>"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn test_subscribe_token() {
        let xml = "<presence type='subscribe' to='juliet@example.com'><preauth xmlns='urn:xmpp:pars:0' token='T2'/></presence>";
        assert_eq!(parse_subscribe_token(xml).unwrap(), "T2");
        let with_nick = "<presence type='subscribe' to='j@e'><nick xmlns='http://jabber.org/protocol/nick'>R</nick><preauth xmlns='urn:xmpp:pars:0' token='T3'/></presence>";
        assert_eq!(parse_subscribe_token(with_nick).unwrap(), "T3");
        assert_eq!(
            parse_subscribe_token("<presence type='subscribed'><preauth xmlns='urn:xmpp:pars:0' token='T'/></presence>"),
            Err(ParseError::NotMine)
        );
        assert_eq!(
            parse_subscribe_token(
                "<presence type='subscribe'><preauth xmlns='urn:xmpp:pars:0'/></presence>"
            ),
            Err(ParseError::NotMine)
        );
    }

    #[test]
    fn test_serialise_reply() {
        let h = Header {
            name: "iq".into(),
            id: Some("x".into()),
            kind: Some("set".into()),
            from: None,
            to: Some("example.com".into()),
        };
        assert_eq!(
            reply(&h).to_xml(),
            "<iq from='example.com' id='x' type='result'/>"
        );
        let h2 = Header { to: None, ..h };
        assert_eq!(reply(&h2).to_xml(), "<iq id='x' type='result'/>");
    }

    #[test]
    fn test_serialise_error_reply() {
        let h = Header {
            name: "iq".into(),
            id: Some("x'<".into()),
            kind: Some("get".into()),
            from: Some("a@b/c".into()),
            to: None,
        };
        let e = error_reply(
            &h,
            ErrorType::Cancel,
            Condition::ItemNotFound,
            "The provided token is invalid or expired",
        );
        assert_eq!(
            e.to_xml(),
            "<iq to='a@b/c' id='x&apos;&lt;' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>The provided token is invalid or expired</text></error></iq>"
        );
    }

    #[test]
    fn test_features_order() {
        let f = register_features();
        assert_eq!(f[0].attr("xmlns"), Some(ns::INVITE));
        assert_eq!(f[1].attr("xmlns"), Some(ns::IBR_TOKEN));
    }
}
