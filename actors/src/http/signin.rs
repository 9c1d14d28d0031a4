//! `GET/POST /signin` and `POST /signout`: operators sign in with their name
//! and password (from the users file) and get a session cookie.
//!
//! A failed sign-in is slowed and counted ([`super::throttle`]), and its
//! answer never says which of the name and the password was wrong.

use super::access::{self, Access};
use super::forms::{self, Fields};
use super::respond::{error_page, render};
use super::state::app_state;
use salvo::http::StatusCode;
use salvo::http::header::RETRY_AFTER;
use salvo::prelude::*;
use serde_json::json;

/// `GET /signin[?next=/path]`: the sign-in form (or who is signed in).
#[handler]
pub async fn form(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(access) = access_or_404(depot, res) else {
        return;
    };
    let next = next_path(req.query::<String>("next").as_deref());
    let operator = access.operator(req, res);
    let csrf = operator.as_ref().map(|o| access.csrf_token(o));
    render(
        res,
        StatusCode::OK,
        "signin",
        json!({
            "next": next,
            "here": access.signs_in_here(),
            "operator": operator.map(|o| o.name),
            "csrf": csrf,
        }),
    );
}

/// `POST /signin`: checks the name and password; on success sets the session
/// cookie and sends the browser on to `next`.
#[handler]
pub async fn sign_in(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(access) = access_or_404(depot, res) else {
        return;
    };
    if !access.signs_in_here() {
        return error_page(
            res,
            StatusCode::NOT_FOUND,
            "Operators sign in through the proxy in front of this service.",
        );
    }
    if forms::from_another_site(req) {
        return forms::refuse_cross_site(res);
    }
    let Some(fields) = Fields::read(req, res, &[]).await else {
        return;
    };
    let name = fields.get("name").trim().to_owned();
    let password = fields.get("password");
    let next = next_path(Some(fields.get("next")));
    let state = app_state(depot);
    let failures = &state.sign_in_failures;
    let address = access
        .client_ip(req)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    // Only a name an operator could have is a key of its own (bounded).
    let name_key = match access::valid_name(&name) {
        Ok(name) => format!("name:{name}"),
        Err(_) => "name:(not a name)".to_owned(),
    };
    let keys = [name_key, format!("addr:{address}")];
    if let Err(wait) = failures.begin(&keys).await {
        let seconds = wait.as_secs().max(1);
        res.headers_mut().insert(RETRY_AFTER, seconds.into());
        return sign_in_again(
            res,
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            &next,
            &format!("Too many failed sign-ins. Please wait {seconds} seconds and try again."),
        );
    }
    let session = match access::valid_name(&name) {
        Ok(name) => access.verify(name, password).await,
        Err(_) => Ok(None),
    };
    let Ok(session) = session else {
        res.headers_mut().insert(RETRY_AFTER, 1u32.into());
        return sign_in_again(
            res,
            StatusCode::SERVICE_UNAVAILABLE,
            &name,
            &next,
            "Many sign-ins are being checked right now. Please try again in a moment.",
        );
    };
    let Some(session) = session else {
        state.metrics.sign_in_failures.increment(1);
        let wait = failures.failed(&keys).await;
        tracing::warn!(%address, name = %name.escape_debug(), "a sign-in failed");
        tokio::time::sleep(wait).await;
        return sign_in_again(
            res,
            StatusCode::UNAUTHORIZED,
            &name,
            &next,
            "The name or the password is wrong.",
        );
    };
    failures.succeeded(&keys).await;
    tracing::info!(operator = %session.name, %address, "an operator signed in");
    access.set_session_cookie(res, &session);
    res.render(Redirect::other(next));
}

/// `POST /signout`: ends the session (its cookie), with the form's CSRF token.
#[handler]
pub async fn sign_out(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(access) = access_or_404(depot, res) else {
        return;
    };
    let Some(operator) = access.operator(req, res) else {
        res.render(Redirect::other("/"));
        return;
    };
    let Some(_) = forms::checked(req, res, &access, &operator, &[]).await else {
        return;
    };
    tracing::info!(operator = %operator.name, "an operator signed out");
    access.clear_session_cookie(res);
    res.render(Redirect::other("/"));
}

fn sign_in_again(res: &mut Response, status: StatusCode, name: &str, next: &str, problem: &str) {
    render(
        res,
        status,
        "signin",
        json!({"next": next, "here": true, "name": name, "problem": problem}),
    );
}

fn access_or_404(depot: &Depot, res: &mut Response) -> Option<Access> {
    let access = app_state(depot).manage.as_ref().map(|m| m.access.clone());
    if access.is_none() {
        forms::managing_is_off(res);
    }
    access
}

/// Where to go after signing in: a path of this site, never another site
/// (`//host` or `/\host` would be one).
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_path_of_this_site() {
        assert_eq!(next_path(Some("/manage/new")), "/manage/new");
        for elsewhere in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "/a\nb",
        ] {
            assert_eq!(next_path(Some(elsewhere)), "/", "{elsewhere:?}");
        }
        assert_eq!(next_path(None), "/");
    }
}
