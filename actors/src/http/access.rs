//! Who may change the catalogue: the operators, and how a request shows it
//! comes from one.
//!
//! Two ways, either or both:
//! - **Built in**: operators from a users file (`name:argon2id-hash` a line),
//!   who sign in at `/signin` and get a session cookie ([`super::session`]).
//! - **Behind an authenticating proxy**: the proxy names the operator in a
//!   header (`X-Forwarded-User` by default), taken only from the proxy
//!   addresses configured (`MANAGE_TRUSTED_PROXIES`), never from anyone else.
//!
//! Reads (the pages, the JSON API, the change stream) need no operator.

use super::session::{self, Lifetimes, Session, SessionKey};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};
use catalogue::product;
use ipnet::IpNet;
use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// How operators are known, as configured.
#[derive(Clone, Debug)]
pub struct Access {
    /// Operators who sign in here: name → argon2id hash (PHC string).
    pub users: Arc<HashMap<String, String>>,
    /// Addresses whose user header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header a trusted proxy names the operator in.
    pub user_header: String,
    pub key: SessionKey,
    pub lifetimes: Lifetimes,
    /// Cookies get `Secure` and the `__Host-` prefix (served over TLS, or
    /// behind a proxy that terminates it).
    pub secure_cookies: bool,
}

/// An operator a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// The session's nonce; empty for an operator the proxy names.
    nonce: String,
}

impl Access {
    /// Whether anyone at all can be an operator.
    pub fn has_operators(&self) -> bool {
        !self.users.is_empty() || !self.trusted_proxies.is_empty()
    }

    /// Whether operators sign in here (else only through the proxy).
    pub fn signs_in_here(&self) -> bool {
        !self.users.is_empty()
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            "__Host-products-session"
        } else {
            "products-session"
        }
    }

    /// The operator the request comes from, if any: the proxy's header from
    /// a trusted proxy, else a valid session cookie (written again, with the
    /// time, when due).
    pub fn operator(&self, req: &Request, res: &mut Response) -> Option<Operator> {
        if let Some(name) = self.proxied_operator(req) {
            private(res);
            return Some(Operator {
                name,
                nonce: String::new(),
            });
        }
        let cookie = cookie(req, self.cookie_name())?;
        let session = Session::open_sealed(&cookie, &self.key, self.lifetimes)?;
        let hash = self.users.get(&session.name)?;
        if !session.is_for(hash) {
            return None;
        }
        if let Some(touched) = session.touched() {
            self.set_session_cookie(res, &touched);
        }
        private(res);
        Some(Operator {
            name: session.name,
            nonce: session.nonce,
        })
    }

    fn proxied_operator(&self, req: &Request) -> Option<String> {
        if self.trusted_proxies.is_empty() {
            return None;
        }
        let from = req.remote_addr().clone().into_std()?.ip();
        let from = match from {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(from),
            v4 => v4,
        };
        if !self.trusted_proxies.iter().any(|net| net.contains(&from)) {
            return None;
        }
        let name = req
            .headers()
            .get(self.user_header.as_str())?
            .to_str()
            .ok()?;
        valid_name(name).ok().map(str::to_owned)
    }

    /// The CSRF token of `operator`'s forms.
    pub fn csrf_token(&self, operator: &Operator) -> String {
        session::csrf_token(&self.key, &operator.name, &operator.nonce)
    }

    /// Whether `token` is `operator`'s CSRF token.
    pub fn csrf_token_is_valid(&self, operator: &Operator, token: &str) -> bool {
        session::csrf_token_is_valid(&self.key, &operator.name, &operator.nonce, token)
    }

    /// Signs `name` in with `password`, if they match a line of the users
    /// file: the session to set. Takes as long for an unknown name as for a
    /// wrong password, so the time says nothing about which was wrong.
    ///
    /// At most [`VERIFYING_AT_ONCE`] passwords are checked at once (each
    /// takes 19 MiB and a core for tens of milliseconds): past it, `Busy`.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Session>, Busy> {
        let Ok(_turn) = VERIFYING.try_acquire() else {
            return Err(Busy);
        };
        let hash = self.users.get(name).cloned();
        let checked = hash.clone().unwrap_or_else(|| dummy_hash().to_owned());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &checked))
            .await
            .unwrap_or(false);
        Ok(match (matches, hash) {
            (true, Some(hash)) => Some(Session::open(name, &hash)),
            _ => None,
        })
    }

    /// The client's address: the connection's, or, on a connection from a
    /// trusted proxy, the last address its `X-Forwarded-For` names (the one
    /// the proxy saw), so that one client's failures are not every client's.
    pub fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        let from = unmapped(req.remote_addr().clone().into_std()?.ip());
        if !self.trusted(from) {
            return Some(from);
        }
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .last()
            .and_then(|last| last.trim().parse::<IpAddr>().ok());
        Some(forwarded.map_or(from, unmapped))
    }

    fn trusted(&self, from: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&from))
    }

    /// Sets the session cookie for `session`.
    pub fn set_session_cookie(&self, res: &mut Response, session: &Session) {
        let value = session.seal(&self.key);
        let max_age = session.remaining(self.lifetimes);
        self.set_cookie(res, &value, max_age);
    }

    /// Removes the session cookie (signing out).
    pub fn clear_session_cookie(&self, res: &mut Response) {
        self.set_cookie(res, "", 0);
    }

    fn set_cookie(&self, res: &mut Response, value: &str, max_age: u64) {
        private(res);
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// Passwords checked at once, at most.
pub const VERIFYING_AT_ONCE: usize = 2;
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VERIFYING_AT_ONCE);

/// Every password check's turn is taken: try again in a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// An answer for one operator (it carries their form tokens, or sets their
/// cookie): no shared cache may keep it.
fn private(res: &mut Response) {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) as IPv4.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// An operator name as taken from the users file, the sign-in form or a
/// proxy (the rule of [`product::check_operator`]).
pub fn valid_name(name: &str) -> Result<&str, String> {
    product::check_operator(name)
}

/// The operators of a users file: one `name:hash` a line (the hash an
/// argon2id PHC string, as `products hash-password` writes it); blank lines
/// and lines starting with `#` are skipped.
pub fn parse_users(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, hash) = line
            .split_once(':')
            .ok_or_else(|| format!("line {number}: expected `name:hash`"))?;
        valid_name(name).map_err(|rule| format!("line {number}: the name {rule}"))?;
        let parsed = PasswordHash::new(hash)
            .map_err(|e| format!("line {number}: not a password hash ({e})"))?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return Err(format!(
                "line {number}: the hash is {}, expected argon2id (write one with `products hash-password`)",
                parsed.algorithm
            ));
        }
        if users.insert(name.to_owned(), hash.to_owned()).is_some() {
            return Err(format!("line {number}: {name:?} is named twice"));
        }
    }
    Ok(users)
}

/// An argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt =
        SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash no password is known for, checked when the name is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()))
}

/// A cookie of the request by name.
pub fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_takes_argon2id_hashes_and_says_which_line_is_wrong() {
        let hash = hash_password("secret");
        let users = parse_users(&format!("# operators\n\nalice:{hash}\n")).unwrap();
        assert_eq!(users["alice"], hash);
        assert!(verify_password("secret", &users["alice"]));
        assert!(!verify_password("Secret", &users["alice"]));

        let wrong = [
            ("alice\n", "line 1: expected `name:hash`"),
            ("alice:plain\n", "line 1: not a password hash"),
            (":x\n", "line 1: the name must be 1 to 64"),
        ];
        for (text, error) in wrong {
            let found = parse_users(text).unwrap_err();
            assert!(found.starts_with(error), "{found}");
        }
        let twice = parse_users(&format!("a:{hash}\na:{hash}\n")).unwrap_err();
        assert!(
            twice.contains("line 2") && twice.contains("twice"),
            "{twice}"
        );
        let argon2i =
            "a:$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ";
        assert!(
            parse_users(argon2i)
                .unwrap_err()
                .contains("expected argon2id"),
            "argon2i refused"
        );
    }

    #[test]
    fn names_with_control_characters_or_colons_are_refused() {
        for name in ["", "a\nb", "a\rb", "a:b", " a", "a\u{0}", &"x".repeat(65)] {
            assert!(valid_name(name).is_err(), "{name:?}");
        }
        for name in ["alice", "Alice Smith", "ops@example.com", "ünï"] {
            assert!(valid_name(name).is_ok(), "{name:?}");
        }
    }
}
