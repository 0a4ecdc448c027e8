//! Identifiers: build ids (`B` + 10 uppercase letters), release ids (`R` + 10), rack ids (12
//! lowercase letters and digits), tokens.
//!
//! This module owns the shape of every generated id; it must never decide what the ids are used
//! for.

use rand::Rng;

fn letters(prefix: char) -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(11);
    id.push(prefix);
    for _ in 0..10 {
        id.push(rng.random_range(b'A'..=b'Z') as char);
    }
    id
}

/// A new build id: `B` followed by 10 uppercase letters.
pub fn build_id() -> String {
    letters('B')
}

/// A new release id: `R` followed by 10 uppercase letters.
pub fn release_id() -> String {
    letters('R')
}

/// A new rack id: 12 lowercase letters and digits (a label value containerd accepts as is).
pub fn rack_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// A new process id: `<service>-<5 lowercase letters>` (the planner's assignments and one-off
/// processes).
pub fn process_id(service: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect();
    format!("{service}-{suffix}")
}

/// A new API token: 32 random bytes, hex-encoded.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// Whether `s` has the shape of an id with the given prefix.
pub fn is_id(s: &str, prefix: char) -> bool {
    s.len() == 11 && s.starts_with(prefix) && s[1..].bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_convox_shape() {
        for _ in 0..100 {
            assert!(is_id(&build_id(), 'B'));
            assert!(is_id(&release_id(), 'R'));
        }
        assert!(!is_id("Rabcdefghij", 'R'));
        assert!(!is_id("RABC", 'R'));
        assert_eq!(token().len(), 64);
        let rack = rack_id();
        assert_eq!(rack.len(), 12);
        assert!(rack
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
