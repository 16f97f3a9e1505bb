//! The example's Argon2 hashes in kept memory are the `argon2` crate's
//! own PHC strings: each side verifies the other's.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use super::password::{hash, verify};

#[test]
fn hashes_verify_both_ways() {
    let ours = hash("correct horse");
    assert!(
        ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{ours}"
    );
    assert_ne!(ours, hash("correct horse"), "a new salt each time");
    let parsed = PasswordHash::new(&ours).unwrap();
    assert!(
        Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"wrong horse", &parsed)
            .is_err()
    );

    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    let theirs = Argon2::default()
        .hash_password(b"battery staple", &salt)
        .unwrap()
        .to_string();
    assert!(verify("battery staple", Some(&theirs)));
    assert!(!verify("battery stable", Some(&theirs)));
    assert!(verify("correct horse", Some(&ours)));
}

#[test]
fn no_account_or_a_broken_hash_never_matches() {
    assert!(
        !verify("not a password", None),
        "the throwaway hash's own password"
    );
    for stored in [
        "",
        "plain text",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ",
        "$argon2id$v=19$m=999999999,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(!verify("anything", Some(stored)), "{stored}");
    }
}
