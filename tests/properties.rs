//! Property tests of the core: the stanza parser never panics and round-trips what it is
//! given, replies are always well-formed XML, record validation survives any field
//! combination, and the throttle and ledger stay bounded.

use invites_register::host::{Config, Host, Origin};
use invites_register::invite::{Flag, Ledger, Record};
use invites_register::stanza::{self, Condition, Element, ErrorType, Header, Node};
use invites_register::throttle::{Throttle, MAX_ADDRESSES};
use proptest::prelude::*;
use quick_xml::events::Event;
use quick_xml::NsReader;

/// Parses `xml` completely; returns the number of elements, or the parser's error.
fn well_formed(xml: &str) -> Result<usize, String> {
    let mut r = NsReader::from_str(xml);
    let mut depth = 0i32;
    let mut elements = 0;
    loop {
        match r.read_resolved_event().map_err(|e| e.to_string())? {
            (_, Event::Start(_)) => {
                depth += 1;
                elements += 1;
            }
            (_, Event::Empty(_)) => elements += 1,
            (_, Event::End(_)) => depth -= 1,
            (_, Event::Eof) => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced: {depth}"));
    }
    Ok(elements)
}

/// XML 1.0 character data: no control characters except tab, LF, CR.
fn xml_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x{FFFE}\\x{FFFF}]{0,64}")
        .expect("valid regex")
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parser_never_panics(s in any::<String>()) {
        let _ = stanza::parse_preauth_iq(&s);
        let _ = stanza::parse_subscribe_token(&s);
    }

    #[test]
    fn parser_never_panics_on_near_stanzas(prefix in "<iq[ a-z='\"]{0,20}>", body in ".{0,80}") {
        let s = format!("{prefix}<preauth xmlns='urn:xmpp:pars:0' {body}");
        let _ = stanza::parse_preauth_iq(&s);
    }

    #[test]
    fn token_round_trips(token in xml_text(), id in xml_text(), to in proptest::option::of(xml_text())) {
        let to_attr = to.as_ref().map(|t| format!(" to='{}'", escape(t))).unwrap_or_default();
        let xml = format!(
            "<iq type='set' id='{}'{}><preauth xmlns='urn:xmpp:pars:0' token='{}'/></iq>",
            escape(&id), to_attr, escape(&token)
        );
        let iq = stanza::parse_preauth_iq(&xml).expect("parses");
        prop_assert_eq!(iq.token.as_deref(), Some(token.as_str()));
        prop_assert_eq!(iq.header.id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(iq.header.to, to);
    }

    #[test]
    fn replies_are_well_formed(
        id in proptest::option::of(xml_text()),
        from in proptest::option::of(xml_text()),
        to in proptest::option::of(xml_text()),
        text in xml_text(),
    ) {
        let h = Header { name: "iq".into(), id: id.clone(), kind: Some("set".into()), from, to };
        for e in [
            stanza::reply(&h),
            stanza::error_reply(&h, ErrorType::Cancel, Condition::ItemNotFound, &text),
            stanza::error_reply(&h, ErrorType::Wait, Condition::PolicyViolation, &text),
        ] {
            let xml = e.to_xml();
            let n = well_formed(&xml).map_err(|err| TestCaseError::fail(format!("{err}: {xml}")))?;
            prop_assert!(n >= 1);
            // The id survives serialisation exactly.
            let reparsed = NsReader::from_str(&xml).read_resolved_event().map(|(_, ev)| match ev {
                Event::Start(s) | Event::Empty(s) => s.try_get_attribute("id").ok().flatten()
                    .map(|a| quick_xml::escape::unescape(&a.value).map(|c| c.into_owned()).unwrap_or_default()),
                _ => None,
            }).ok().flatten();
            prop_assert_eq!(reparsed, id.clone());
        }
    }

    #[test]
    fn error_text_round_trips(text in xml_text()) {
        let h = Header { name: "iq".into(), id: Some("x".into()), ..Header::default() };
        let e = stanza::error_reply(&h, ErrorType::Modify, Condition::BadRequest, &text);
        let Node::Element(err) = &e.children[0] else { panic!("error child") };
        let Node::Element(t) = &err.children[1] else { panic!("text child") };
        prop_assert_eq!(&t.children, &vec![Node::Text(text.clone())]);
        prop_assert!(well_formed(&e.to_xml()).is_ok());
    }

    #[test]
    fn record_validation_never_panics(
        kind in proptest::option::of(prop_oneof![Just("register".to_string()), Just("roster".to_string()), ".{0,8}"]),
        jid in proptest::option::of(".{0,24}"),
        allow in prop_oneof![Just(Flag::Absent), Just(Flag::Truthy), Just(Flag::False)],
        expires in proptest::option::of(prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), -1e12f64..1e12]),
        reusable in any::<bool>(),
        allow_reset in proptest::option::of(".{0,8}"),
        now in proptest::option::of(any::<i64>()),
    ) {
        let r = Record { kind: kind.clone(), jid, allow_registration: allow, expires, reusable, allow_reset };
        if let Ok(v) = r.validate("T", now) {
            prop_assert!(matches!(kind.as_deref(), Some("register") | Some("roster")));
            prop_assert!(allow != Flag::False);
            if let Some(now) = now { prop_assert!(now <= v.expires); }
        }
    }

    #[test]
    fn throttle_stays_bounded(ops in proptest::collection::vec((0u32..50_000, 0u64..200_000), 1..2000)) {
        let mut t = Throttle::new(3);
        let mut now = 0;
        for (addr, step) in ops {
            now += step % 1000;
            t.record_failure(&addr.to_string(), now);
            prop_assert!(t.len() <= MAX_ADDRESSES);
        }
    }

    #[test]
    fn ledger_claims_are_exclusive(ops in proptest::collection::vec((0u8..4, 0u8..3, 0u8..4), 1..200)) {
        // (token, holder, op): op 0 claim, 1 settle, 2 release, 3 check
        let mut l = Ledger::new();
        let mut holder: [Option<u8>; 4] = [None; 4];
        let mut consumed = [false; 4];
        for (tok, who, op) in ops {
            let token = format!("t{tok}");
            let handle = format!("h{who}");
            let i = tok as usize;
            match op {
                0 => {
                    let ok = l.claim(&token, handle, 100, 0).is_ok();
                    prop_assert_eq!(ok, holder[i].is_none());
                    if ok { holder[i] = Some(who); }
                }
                1 => {
                    let ok = l.settle(&token, &handle, 0);
                    prop_assert_eq!(ok, holder[i] == Some(who));
                    if ok { holder[i] = None; consumed[i] = true; }
                }
                2 => {
                    let ok = l.release(&token, &handle);
                    prop_assert_eq!(ok, holder[i] == Some(who));
                    if ok { holder[i] = None; }
                }
                _ => {
                    prop_assert_eq!(l.is_used(&token, false, 0, 0), holder[i].is_some() || consumed[i]);
                }
            }
        }
    }
}

#[test]
fn test_preauth_flow_with_hostile_tokens() {
    let mut h = Host::new(Config {
        host: "example.com".into(),
        invite_only: true,
        require_encryption: true,
        token_attempts: 0,
    });
    let origin = Origin {
        ip: Some("198.51.100.7"),
        secure: true,
        same_host: true,
    };
    let huge = "A".repeat(64 * 1024);
    for token in ["", "\u{202e}evil", "a\u{0301}", "<&>'\"", huge.as_str()] {
        let xml = format!(
            "<iq type='set' id='h'><preauth xmlns='urn:xmpp:pars:0' token='{}'/></iq>",
            escape(token)
        );
        let iq = stanza::parse_preauth_iq(&xml).expect("parses");
        assert_eq!(iq.token.as_deref(), Some(token));
        let outcome = h.preauth_begin(iq.token.as_deref(), origin, 0);
        let reply = stanza::preauth_reply(&iq.header, &outcome);
        assert!(well_formed(&reply.to_xml()).is_ok());
        match outcome {
            Err(_) => assert!(token.is_empty() || token.len() > 1024, "{token:?}"),
            Ok(()) => assert!(!token.is_empty() && token.len() <= 1024),
        }
    }
}

#[test]
fn test_features_serialise() {
    let f: Vec<String> = stanza::register_features()
        .iter()
        .map(Element::to_xml)
        .collect();
    assert_eq!(
        f,
        [
            "<register xmlns='urn:xmpp:invite'/>",
            "<register xmlns='urn:xmpp:ibr-token:0'/>"
        ]
    );
}
