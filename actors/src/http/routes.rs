//! The routes, and what every response gets: security headers, a request
//! timeout, and error pages in the format the client asked for.

use super::state::AppState;
use super::views::Assets;
use super::{api, changes, manage, observe, openapi, pages, respond, signin};
use crate::timeouts::REQUEST_TIMEOUT;
use salvo::affix_state;
use salvo::catcher::Catcher;
use salvo::http::StatusCode;
use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use salvo::serve_static::static_embed;
use salvo::timeout::Timeout;
use std::sync::Arc;

/// Scripts, styles and the change stream only from this origin, never inline;
/// forms post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

pub fn service(state: AppState, cors_origins: &[String]) -> Service {
    let router = router();
    let description = openapi::describe(&router)
        .to_json()
        .expect("the description is plain data: it serializes");
    let mut service = Service::new(router).hoop(observe::Observe::new(
        &state.names,
        state.health.freshness().clone(),
    ));
    // Inside `Observe`, so a preflight it answers is counted as answered.
    if let Some(cors) = cors(cors_origins) {
        service = service.hoop(cors);
    }
    service
        // One `Arc` per request, not a clone of every handle the state holds.
        .hoop(affix_state::inject(Arc::new(state)))
        .hoop(affix_state::inject(openapi::Description(Arc::new(
            description,
        ))))
        .hoop(security_headers)
        .hoop(Timeout::new(REQUEST_TIMEOUT))
        .catcher(Catcher::new(error_response))
}

/// Every route the service serves. `/openapi.json` describes the JSON ones
/// (the `#[endpoint]`s) from this very router.
pub fn router() -> Router {
    Router::new()
        .get(pages::index)
        .push(Router::with_path("product").get(pages::product_page))
        .push(Router::with_path("rejected").get(pages::rejected))
        .push(
            Router::with_path("signin")
                .get(signin::form)
                .post(signin::sign_in),
        )
        .push(Router::with_path("signout").post(signin::sign_out))
        .push(
            Router::with_path("manage")
                .push(Router::with_path("new").get(manage::new_form))
                .push(Router::with_path("edit").get(manage::edit_form))
                .push(Router::with_path("save").post(manage::save))
                .push(Router::with_path("delete").post(manage::delete))
                .push(Router::with_path("replay").post(manage::replay))
                .push(Router::with_path("sent").get(manage::sent)),
        )
        .push(
            Router::with_path("products")
                .push(Router::with_path("changes").get(changes::changes))
                .push(
                    // `ETag` on every product answer (the product's revision,
                    // or a hash of a list page), and `If-None-Match` answered
                    // with 304.
                    Router::new()
                        .hoop(salvo::caching_headers::ETag::new())
                        .get(api::list)
                        .push(Router::with_path("{id}").get(api::one)),
                ),
        )
        .push(Router::with_path("products.ndjson").get(changes::snapshot))
        .push(Router::with_path("rejected.json").get(api::rejected))
        .push(Router::with_path("healthz").get(api::healthz))
        .push(Router::with_path("readyz").get(api::readyz))
        .push(Router::with_path(openapi::PATH).get(openapi::serve))
        .push(Router::with_path("metrics").get(observe::serve))
        .push(Router::with_path("static/{**path}").get(static_embed::<Assets>()))
}

/// CORS for the origins given, if any: a browser on one of them may `GET`
/// (and `HEAD`) any answer without credentials, and read the headers that
/// say how fresh it is and where the next page is. Cookies are never allowed
/// across origins, so the forms and a session stay this site's only.
fn cors(origins: &[String]) -> Option<salvo::cors::CorsHandler> {
    use salvo::cors::{Any, Cors};
    if origins.is_empty() {
        return None;
    }
    let cors = Cors::new()
        .allow_methods(vec![salvo::http::Method::GET, salvo::http::Method::HEAD])
        .allow_headers(vec![
            header::IF_NONE_MATCH,
            header::ACCEPT,
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers(vec![
            header::ETAG,
            header::LINK,
            header::RETRY_AFTER,
            header::HeaderName::from_static(respond::APPLIED_SEQ),
            header::HeaderName::from_static(changes::POSITION),
            header::HeaderName::from_static("x-request-id"),
        ])
        .max_age(600);
    let cors = match origins.iter().any(|origin| origin == "*") {
        true => cors.allow_origin(Any),
        false => cors.allow_origin(origins.iter().map(String::as_str).collect::<Vec<_>>()),
    };
    Some(cors.into_handler())
}

#[handler]
async fn security_headers(res: &mut Response) {
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Errors no handler wrote a body for (unknown path, wrong method, timeout):
/// JSON for the API paths, an HTML page elsewhere.
#[handler]
async fn error_response(req: &mut Request, res: &mut Response) {
    let status = res.status_code.unwrap_or(StatusCode::NOT_FOUND);
    let message = match status {
        StatusCode::NOT_FOUND => "There is nothing at this address.",
        StatusCode::METHOD_NOT_ALLOWED => "This address does not take that method.",
        StatusCode::SERVICE_UNAVAILABLE => "The request took too long. Please try again.",
        _ => "The request could not be handled.",
    };
    let path = req.uri().path();
    if [
        "/products",
        "/products.ndjson",
        "/rejected.json",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ]
    .iter()
    .any(|api| path == *api || path.starts_with(&format!("{api}/")))
    {
        respond::json_error(res, status, message);
    } else {
        respond::error_page(res, status, message);
    }
}
