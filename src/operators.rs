//! What operators run beside the service: `products hash-password` (an
//! operator's line for `MANAGE_USERS_FILE`) and `products healthcheck`.

use actors::http::access;
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal};

/// `NAME:HASH` for `name`, with the password read from the terminal (asked
/// twice, without echo) or else from the first line of standard input.
pub fn hash_password_line(name: &str) -> anyhow::Result<String> {
    access::valid_name(name).map_err(|rule| anyhow::anyhow!("the name {rule}"))?;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("The same password again: ")
            .context("cannot read the password from the terminal")?;
        if first != again {
            bail!("the two passwords differ; nothing was written");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("the password is empty; nothing was written");
    }
    Ok(format!("{name}:{}", access::hash_password(&password)))
}

/// Where to ask a service that listens on `addr`: its own address, or the
/// loopback when it listens on every interface.
pub fn loopback(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// `GET /healthz` at `addr` answered 200 within 2 s.
pub async fn alive(addr: std::net::SocketAddr) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("/healthz answered {}", response.status()))
    }
}
