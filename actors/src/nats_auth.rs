//! Credentials in a NATS server URL. async-nats 0.51 reads no user info from a
//! server URL: `nats://user:password@host` and `nats://token@host` connect
//! without them and are refused by a server that requires them. This takes
//! them out of the URL and into the client's options, and hands back the
//! address without them (async-nats logs server addresses at debug level).

use async_nats::{ConnectOptions, ServerAddr};

/// Options carrying the URL's user and password (or its token: a user with
/// no password), and the server address with no credentials in it. A URL
/// async-nats cannot parse is passed on as it is, for it to refuse.
pub fn connect_options(url: &str) -> (ConnectOptions, String) {
    let Ok(addr) = url.parse::<ServerAddr>() else {
        return (ConnectOptions::new(), url.to_owned());
    };
    let user = addr.username().map(percent_decode);
    let password = addr.password().map(percent_decode);
    let mut server = addr.into_inner();
    let _ = server.set_password(None);
    let _ = server.set_username("");
    let options = match (user, password) {
        (Some(user), Some(password)) => ConnectOptions::with_user_and_password(user, password),
        (Some(token), None) => ConnectOptions::with_token(token),
        (None, _) => ConnectOptions::new(),
    };
    (options, server.to_string())
}

/// `%40` back to `@`: user info in a URL is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_address_keeps_no_credentials() {
        assert_eq!(
            connect_options("nats://app:s3cret@127.0.0.1:4222").1,
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            connect_options("t0ken@localhost:4333").1,
            "nats://localhost:4333"
        );
        assert_eq!(
            connect_options("nats://localhost:4222").1,
            "nats://localhost:4222"
        );
    }

    #[test]
    fn percent_encoded_user_info_is_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aw%2Crd"), "p@ss:w,rd");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
