//! URLs that may carry credentials (`postgres://user:password@host/db`,
//! `nats://user:password@host`, `nats://token@host`, a comma-separated list of
//! servers). [`SecretUrl`] prints itself redacted in `Debug` and `Display`, so a
//! log line, an error's context or `--help` cannot show a password by accident;
//! the text itself comes out only through [`SecretUrl::expose`], for the code
//! that connects.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// What stands in for the credentials.
const MASK: &str = "***";

/// A URL (or a comma-separated list of them) whose credentials never reach a
/// log: `Debug` and `Display` show the user info of each URL, and the value of
/// any query parameter that looks like a secret (`password=`, `token=`…), as
/// `***`.
///
/// Parsing accepts any text: what a valid URL is depends on the setting, and
/// `Settings::validate` says so with the redacted text (clap would echo it).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL with its credentials, for the one place that connects. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its credentials replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl FromStr for SecretUrl {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for SecretUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A secret that is not a URL (a key): `Debug` and `Display` show `***`;
/// the text comes out only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(Self(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Masks the user info of every URL in `text`, and secret-looking query values.
///
/// Deliberately a rule on the text rather than on a parsed URL, so that it
/// holds for text no URL parser accepts (an unencoded `@`, `#` or `,` in a
/// password, a server without a scheme, a list): everything between the start
/// of a URL (the text's start or a `://`) and the last `@` before the next URL
/// starts is masked. It may mask more than the user info, never less.
fn redact(text: &str) -> String {
    // Where each URL's authority may start, and where the next scheme separator is.
    let separators: Vec<usize> = text.match_indices("://").map(|(i, _)| i).collect();
    let starts = std::iter::once(0).chain(separators.iter().map(|i| i + 3));
    let ends = separators
        .iter()
        .copied()
        .chain(std::iter::once(text.len()));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in starts.zip(ends) {
        if let Some(at) = text[start..end].rfind('@') {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = start + at;
        }
    }
    out.push_str(&text[copied..]);
    redact_query(&out)
}

/// Masks the value of each query parameter whose name suggests a secret
/// (Postgres takes `?password=`).
fn redact_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let key_end = rest.find(['=', '&', '#']).unwrap_or(rest.len());
        let key = rest[..key_end].to_ascii_lowercase();
        if rest[key_end..].starts_with('=')
            && ["pass", "token", "secret", "key"]
                .iter()
                .any(|k| key.contains(k))
        {
            out.push_str(&rest[..=key_end]);
            out.push_str(MASK);
            let value_end = rest[key_end..]
                .find(['&', '#'])
                .map_or(rest.len(), |j| key_end + j);
            rest = &rest[value_end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        SecretUrl::from(url).to_string()
    }

    #[test]
    fn a_password_is_masked_with_its_user_and_the_rest_is_kept() {
        assert_eq!(
            shown("postgres://app:s3cret@db.example:5432/products"),
            "postgres://***@db.example:5432/products"
        );
        assert_eq!(
            shown("nats://app:s3cret@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
    }

    #[test]
    fn a_nats_token_in_the_user_position_is_masked() {
        assert_eq!(
            shown("nats://s3cret@localhost:4222"),
            "nats://***@localhost:4222"
        );
        assert_eq!(shown("tls://s3cret@localhost"), "tls://***@localhost");
    }

    #[test]
    fn each_server_of_a_list_is_masked() {
        assert_eq!(
            shown("nats://a:s3cret1@n1:4222,nats://s3cret2@n2:4222, nats://n3:4222"),
            "nats://***@n1:4222,nats://***@n2:4222, nats://n3:4222"
        );
        // Without schemes, as async-nats also accepts them.
        let list = shown("a:s3cret1@n1:4222,b:s3cret2@n2:4222");
        assert!(!list.contains("s3cret"), "{list}");
    }

    #[test]
    fn a_url_without_credentials_is_shown_as_it_is() {
        for url in [
            "nats://localhost:4222",
            "postgres://localhost/products?host=/var/run/postgresql",
            "localhost:4222",
            "",
        ] {
            assert_eq!(shown(url), url);
        }
    }

    #[test]
    fn a_password_that_no_url_parser_accepts_is_still_masked() {
        for url in [
            "postgres://app:p@ss/w#rd,x@db/products",
            "nats://tok#en@localhost",
            "app:s3cret@localhost:4222",
            "postgres://app:s3cret@",
        ] {
            let shown = shown(url);
            for secret in ["p@ss", "w#rd", "tok", "en@", "s3cret"] {
                assert!(!shown.contains(secret), "{url} is shown as {shown}");
            }
        }
    }

    #[test]
    fn a_password_in_the_query_is_masked() {
        assert_eq!(
            shown("postgres://app@db/products?sslmode=require&password=s3cret&application_name=p"),
            "postgres://***@db/products?sslmode=require&password=***&application_name=p"
        );
        assert_eq!(
            shown("postgres://db/p?PassWord=s3cret#x"),
            "postgres://db/p?PassWord=***#x"
        );
        assert_eq!(shown("nats://h?token=s3cret"), "nats://h?token=***");
    }

    #[test]
    fn debug_is_redacted_too_and_expose_gives_the_text_back() {
        let url = SecretUrl::from("nats://app:s3cret@localhost:4222");
        assert_eq!(
            format!("{url:?}"),
            r#"SecretUrl("nats://***@localhost:4222")"#
        );
        assert!(!format!("{url:#?}").contains("s3cret"));
        assert_eq!(url.expose(), "nats://app:s3cret@localhost:4222");
    }
}
