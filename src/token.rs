//! Token shape. Prosody's mod_invites makes tokens with `util.id.medium()`: 18 random
//! bytes as 24 characters of base64url. We treat stored tokens as opaque exact strings
//! and only bound their length before any lookup; `generate` makes tokens of the same
//! shape (claim handles, tests, benchmarks) from an injectable random source.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use rand::{Rng, RngExt};

/// Longest token we ever look up (bytes). Longer ones are invalid without a lookup.
pub const MAX_LEN: usize = 1024;
/// Length of a `util.id.medium()` token.
pub const MEDIUM_LEN: usize = 24;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// True when `token` is worth a storage lookup: non-empty and at most [`MAX_LEN`] bytes.
pub fn is_lookup_candidate(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_LEN
}

/// A fresh 24-character base64url token, like `util.id.medium()`.
pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> String {
    (0..MEDIUM_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Longest token a [`Key`] holds inline.
const INLINE: usize = 30;

/// A token as a map key: held inline up to 30 bytes (mod_invites makes 24), so that an
/// index of 100,000 invites is one allocation rather than 100,000 small ones (which
/// interleave with Lua's and keep the parsed store's memory from returning to the
/// system).
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Key {
    /// The token.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        let mut bytes = [0u8; INLINE];
        match bytes.get_mut(..s.len()) {
            Some(slot) => {
                slot.copy_from_slice(s.as_bytes());
                Key(Repr::Inline {
                    len: s.len() as u8,
                    bytes,
                })
            }
            None => Key(Repr::Heap(s.into())),
        }
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn test_generate_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        let t = generate(&mut rng);
        assert_eq!(t.len(), MEDIUM_LEN);
        assert!(t.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(t, generate(&mut rng));
    }

    #[test]
    fn test_generate_is_seeded() {
        let a = generate(&mut StdRng::seed_from_u64(1));
        let b = generate(&mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }

    #[test]
    fn test_keys_inline_and_on_the_heap() {
        use std::collections::HashMap;
        assert_eq!(std::mem::size_of::<Key>(), 32);
        let mut m: HashMap<Key, u8> = HashMap::new();
        let long = "x".repeat(100);
        for (i, t) in ["", "tok", &"a".repeat(30), &"b".repeat(31), &long, "é"]
            .into_iter()
            .enumerate()
        {
            m.insert(Key::from(t), i as u8);
        }
        assert_eq!(m.get("tok"), Some(&1));
        assert_eq!(m.get(long.as_str()), Some(&4));
        assert_eq!(m.get("b".repeat(31).as_str()), Some(&3));
        assert_eq!(m.get("é"), Some(&5));
        assert_eq!(Key::from("a".repeat(30).as_str()).as_str(), "a".repeat(30));
        assert!(!m.contains_key("to"));
    }

    #[test]
    fn test_invalid_lookup_candidates() {
        assert!(!is_lookup_candidate(""));
        assert!(!is_lookup_candidate(&"a".repeat(MAX_LEN + 1)));
        assert!(is_lookup_candidate(&"a".repeat(MAX_LEN)));
        assert!(is_lookup_candidate("tok"));
    }
}
