//! XML namespaces this module speaks, each with the specification it comes from.

/// XEP-0379 (Pre-Authenticated Roster Subscription) and XEP-0401: the `preauth` element.
pub const PARS: &str = "urn:xmpp:pars:0";
/// XEP-0445 (Pre-Authenticated In-Band Registration): the `register` stream feature.
pub const IBR_TOKEN: &str = "urn:xmpp:ibr-token:0";
/// XEP-0401 0.3.0 (Easy User Onboarding): the legacy `register` stream feature.
pub const INVITE: &str = "urn:xmpp:invite";
/// RFC 6120 §8.3.3: defined stanza error conditions and the `text` element.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// RFC 6120 §4.8.3: the default namespace of client streams.
pub const CLIENT: &str = "jabber:client";
