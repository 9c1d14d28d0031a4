//! An operator's session: a cookie the service signs, and the CSRF token that
//! goes with it.
//!
//! The cookie holds who signed in, when, when they were last seen, a random
//! nonce and a fingerprint of their password hash, signed with HMAC-SHA256
//! under the session key (`MANAGE_SESSION_KEY`). Nothing is kept on the
//! server, so every replica that shares the key accepts a session another
//! one issued. A session ends when it has been idle for `MANAGE_SESSION_IDLE`,
//! when it is `MANAGE_SESSION_MAX` old, when the operator's password (their
//! line in the users file) changes, or when the key changes.
//!
//! A form's CSRF token is an HMAC of the operator and the session's nonce
//! under the same key: a page of another site can neither read it nor make
//! one, and a token from one session is worth nothing in another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<Sha256>;

/// The shortest session key taken, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// A session last seen longer ago than this is written again (with the new
/// time), so that the idle expiry moves with use without a cookie per request.
const SEEN_GRANULARITY: u64 = 60;

/// The key sessions and CSRF tokens are signed with. Never printed.
#[derive(Clone)]
pub struct SessionKey(Vec<u8>);

impl SessionKey {
    /// A key from the setting's bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -base64 48`)"
            ));
        }
        Ok(Self(bytes))
    }

    /// A fresh random key, for a deployment that sets none.
    pub fn random() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            // Each part with its length first: no two lists of parts sign alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

/// How long sessions last.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Unused for this long, a session ends.
    pub idle: Duration,
    /// This long after signing in, a session ends however it is used.
    pub max: Duration,
}

/// What a session cookie says, once its signature and times are checked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The operator's name.
    #[serde(rename = "u")]
    pub name: String,
    /// When they signed in (seconds since the epoch).
    #[serde(rename = "i")]
    pub issued: u64,
    /// When the session was last written.
    #[serde(rename = "s")]
    pub seen: u64,
    /// Random per sign-in: ties the CSRF token to this session.
    #[serde(rename = "n")]
    pub nonce: String,
    /// A digest of the password hash it was opened with.
    #[serde(rename = "h")]
    pub fingerprint: String,
}

impl Session {
    /// A new session for `name`, whose password hash is `hash`.
    pub fn open(name: &str, hash: &str) -> Self {
        let now = now();
        Self {
            name: name.to_owned(),
            issued: now,
            seen: now,
            nonce: B64.encode(rand::random::<[u8; 16]>()),
            fingerprint: fingerprint(hash),
        }
    }

    /// The cookie's value: the session and its signature.
    pub fn seal(&self, key: &SessionKey) -> String {
        let body = B64.encode(serde_json::to_vec(self).expect("plain data serializes"));
        let signature = B64.encode(
            key.mac(&[b"session", body.as_bytes()])
                .finalize()
                .into_bytes(),
        );
        format!("{body}.{signature}")
    }

    /// The session in `cookie`, if the key signed it and it has not expired.
    pub fn open_sealed(cookie: &str, key: &SessionKey, lifetimes: Lifetimes) -> Option<Self> {
        let (body, signature) = cookie.split_once('.')?;
        let signature = B64.decode(signature).ok()?;
        key.mac(&[b"session", body.as_bytes()])
            .verify_slice(&signature)
            .ok()?;
        let session: Session = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        let now = now();
        let alive = now.saturating_sub(session.issued) < lifetimes.max.as_secs()
            && now.saturating_sub(session.seen) < lifetimes.idle.as_secs();
        alive.then_some(session)
    }

    /// Whether it was opened with the password hash `hash` (one that changed
    /// since ends the session).
    pub fn is_for(&self, hash: &str) -> bool {
        same(&self.fingerprint, &fingerprint(hash))
    }

    /// The session seen now, if the cookie is due to be written again.
    pub fn touched(&self) -> Option<Self> {
        let now = now();
        (now.saturating_sub(self.seen) >= SEEN_GRANULARITY).then(|| Self {
            seen: now,
            ..self.clone()
        })
    }

    /// Seconds until it ends at the latest (the cookie's `Max-Age`).
    pub fn remaining(&self, lifetimes: Lifetimes) -> u64 {
        (self.issued + lifetimes.max.as_secs()).saturating_sub(now())
    }
}

/// The CSRF token of the operator `name` in the session with `nonce` (empty
/// for an operator the proxy names, who has no session of ours).
pub fn csrf_token(key: &SessionKey, name: &str, nonce: &str) -> String {
    B64.encode(
        key.mac(&[b"csrf", name.as_bytes(), nonce.as_bytes()])
            .finalize()
            .into_bytes(),
    )
}

/// Whether `token` is the CSRF token of `name` in the session with `nonce`.
pub fn csrf_token_is_valid(key: &SessionKey, name: &str, nonce: &str, token: &str) -> bool {
    let Ok(token) = B64.decode(token) else {
        return false;
    };
    key.mac(&[b"csrf", name.as_bytes(), nonce.as_bytes()])
        .verify_slice(&token)
        .is_ok()
}

fn fingerprint(hash: &str) -> String {
    B64.encode(&Sha256::digest(hash.as_bytes())[..12])
}

/// Compares in time independent of where the two differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIMES: Lifetimes = Lifetimes {
        idle: Duration::from_secs(600),
        max: Duration::from_secs(3600),
    };

    fn key() -> SessionKey {
        SessionKey::new(vec![7; 32]).unwrap()
    }

    #[test]
    fn a_sealed_session_opens_with_its_key_only() {
        let session = Session::open("alice", "$argon2id$hash");
        let sealed = session.seal(&key());
        assert_eq!(
            Session::open_sealed(&sealed, &key(), LIFETIMES),
            Some(session)
        );
        let other = SessionKey::new(vec![8; 32]).unwrap();
        assert_eq!(Session::open_sealed(&sealed, &other, LIFETIMES), None);
    }

    #[test]
    fn a_changed_session_is_refused() {
        let session = Session::open("alice", "h");
        let sealed = session.seal(&key());
        let (_, signature) = sealed.split_once('.').unwrap();
        let forged = Session {
            name: "mallory".into(),
            ..session
        };
        let body = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{body}.{signature}");
        assert_eq!(Session::open_sealed(&tampered, &key(), LIFETIMES), None);
        for junk in ["", ".", "a.b", "no-dot"] {
            assert_eq!(Session::open_sealed(junk, &key(), LIFETIMES), None);
        }
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old() {
        let mut session = Session::open("alice", "h");
        session.seen -= 601;
        assert_eq!(
            Session::open_sealed(&session.seal(&key()), &key(), LIFETIMES),
            None
        );
        let mut session = Session::open("alice", "h");
        session.issued -= 3601;
        assert_eq!(
            Session::open_sealed(&session.seal(&key()), &key(), LIFETIMES),
            None
        );
    }

    #[test]
    fn a_session_is_for_the_password_it_was_opened_with() {
        let session = Session::open("alice", "old hash");
        assert!(session.is_for("old hash"));
        assert!(!session.is_for("new hash"));
    }

    #[test]
    fn a_csrf_token_belongs_to_one_operator_in_one_session() {
        let token = csrf_token(&key(), "alice", "n1");
        assert!(csrf_token_is_valid(&key(), "alice", "n1", &token));
        assert!(!csrf_token_is_valid(&key(), "alice", "n2", &token));
        assert!(!csrf_token_is_valid(&key(), "bob", "n1", &token));
        assert!(!csrf_token_is_valid(
            &SessionKey::new(vec![8; 32]).unwrap(),
            "alice",
            "n1",
            &token
        ));
        assert!(!csrf_token_is_valid(&key(), "alice", "n1", "not base64!"));
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(SessionKey::new(vec![1; 31]).is_err());
    }
}
