//! Token shape. Prosody's mod_invites makes tokens with `util.id.medium()`: 18 random
//! bytes as 24 characters of base64url. We treat stored tokens as opaque exact strings
//! and only bound their length before any lookup; `generate` makes tokens of the same
//! shape (claim handles, tests, benchmarks) from an injectable random source.

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
    fn test_invalid_lookup_candidates() {
        assert!(!is_lookup_candidate(""));
        assert!(!is_lookup_candidate(&"a".repeat(MAX_LEN + 1)));
        assert!(is_lookup_candidate(&"a".repeat(MAX_LEN)));
        assert!(is_lookup_candidate("tok"));
    }
}
