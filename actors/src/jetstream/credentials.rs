//! Credentials in a NATS server URL. async-nats 0.51 reads no user info from a
//! server URL: `nats://user:password@host` and `nats://token@host` connect
//! without them and are refused by a server that requires them. This takes
//! them out of the URL and into the client's options, and hands back the
//! address without them (async-nats logs server addresses at debug level).

use async_nats::{ConnectOptions, ServerAddr};

/// Options carrying the URL's user and password (or its token: a user with
/// no password), and the server addresses with no credentials in them. `urls`
/// may list several servers of a cluster, comma-separated; credentials are
/// taken from the first that has them. An address async-nats cannot parse is
/// passed on as it is, for it to refuse.
pub fn connect_options(urls: &str) -> (ConnectOptions, Vec<String>) {
    let mut credentials = None;
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            let Ok(addr) = url.parse::<ServerAddr>() else {
                return url.to_owned();
            };
            let user = addr.username().map(percent_decode);
            let password = addr.password().map(percent_decode);
            if credentials.is_none() && user.is_some() {
                credentials = Some((user, password));
            }
            let mut server = addr.into_inner();
            let _ = server.set_password(None);
            let _ = server.set_username("");
            server.to_string()
        })
        .collect();
    let options = match credentials {
        Some((Some(user), Some(password))) => {
            ConnectOptions::with_user_and_password(user, password)
        }
        Some((Some(token), None)) => ConnectOptions::with_token(token),
        _ => ConnectOptions::new(),
    };
    (options, servers)
}

/// `%40` back to `@`: user info in a URL is percent-encoded.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_address_keeps_no_credentials() {
        assert_eq!(
            connect_options("nats://app:s3cret@127.0.0.1:4222").1,
            ["nats://127.0.0.1:4222"]
        );
        assert_eq!(
            connect_options("t0ken@localhost:4333").1,
            ["nats://localhost:4333"]
        );
        assert_eq!(
            connect_options("nats://localhost:4222").1,
            ["nats://localhost:4222"]
        );
    }

    #[test]
    fn a_list_of_servers_keeps_each_without_credentials() {
        assert_eq!(
            connect_options("nats://a:b@n1:4222, nats://a:b@n2:4223,nats://n3:4224").1,
            ["nats://n1:4222", "nats://n2:4223", "nats://n3:4224"]
        );
    }

    #[test]
    fn percent_encoded_user_info_is_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aw%2Crd"), "p@ss:w,rd");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
