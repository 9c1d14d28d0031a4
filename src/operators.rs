//! `products hash-password`: an operator's line for `MANAGE_USERS_FILE`.

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
