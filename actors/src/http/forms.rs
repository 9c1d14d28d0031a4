//! What every posted form goes through before a handler acts on it: it comes
//! from this site (not another site's `Origin`), its fields hold no control
//! characters, and its CSRF token is the operator's ([`Access::csrf_token`]).
//!
//! The token is signed with the service's key and tied to the operator's
//! session, so a token the service never issued, or one from another session,
//! is refused whatever the `Origin` says: a browser under `Referrer-Policy:
//! no-referrer` sends `Origin: null`, which any page can produce too, so the
//! token decides.

use super::access::{Access, Operator};
use super::respond::error_page;
use salvo::http::StatusCode;
use salvo::prelude::*;
use std::collections::HashMap;

/// The form field that carries the CSRF token.
pub const CSRF: &str = "csrf";

/// A posted form's fields (the first value of each), checked for control
/// characters.
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// The posted form. A field holding a control character (in `multiline`
    /// fields, any but a line break or a tab) is answered with a 400 page
    /// that names it, and `None`.
    pub async fn read(req: &mut Request, res: &mut Response, multiline: &[&str]) -> Option<Self> {
        let fields: HashMap<String, String> = match req.form_data().await {
            Ok(data) => data
                .fields
                .iter_all()
                .filter_map(|(key, values)| Some((key.clone(), values.first()?.clone())))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let mut names: Vec<&String> = fields.keys().collect();
        names.sort();
        for name in names {
            let allowed =
                |c: char| multiline.contains(&name.as_str()) && matches!(c, '\n' | '\r' | '\t');
            let bad = name.chars().find(|c| c.is_control()).or_else(|| {
                fields[name]
                    .chars()
                    .find(|&c| c.is_control() && !allowed(c))
            });
            if let Some(c) = bad {
                error_page(
                    res,
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "The field “{}” holds a control character (U+{:04X}), which this form does not take. Go back, remove it and send the form again.",
                        name.escape_debug(),
                        u32::from(c)
                    ),
                );
                return None;
            }
        }
        Some(Self(fields))
    }

    /// The field's value, or an empty one.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

/// The form comes from this site's own page as far as its `Origin` says:
/// an `Origin` naming another host (or any `Origin` without a `Host`) is
/// another site's. `Origin: null` says nothing (the token decides).
pub fn from_another_site(req: &Request) -> bool {
    let origin = req.header::<String>("origin").filter(|o| o != "null");
    match (origin, req.header::<String>("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            origin_host != Some(host.as_str())
        }
        (Some(_), None) => true,
        _ => false,
    }
}

pub fn refuse_cross_site(res: &mut Response) {
    error_page(
        res,
        StatusCode::FORBIDDEN,
        "This form could not be accepted: it did not come from this site's own page. Open the form again and send it from there.",
    );
}

/// The fields of a form `operator` posted, once it is shown to come from
/// this site's page in their session (see the module's doc); else the
/// answer is written (403 or 400) and `None`.
pub async fn checked(
    req: &mut Request,
    res: &mut Response,
    access: &Access,
    operator: &Operator,
    multiline: &[&str],
) -> Option<Fields> {
    if from_another_site(req) {
        refuse_cross_site(res);
        return None;
    }
    let fields = Fields::read(req, res, multiline).await?;
    if !access.csrf_token_is_valid(operator, fields.get(CSRF)) {
        error_page(
            res,
            StatusCode::FORBIDDEN,
            "This form could not be accepted: it was not sent from a page this site gave you in this session (or the session has ended). Open the form again and send it from there.",
        );
        return None;
    }
    Some(fields)
}

/// The 404 page of the manage routes where no operator is configured.
pub fn managing_is_off(res: &mut Response) {
    error_page(
        res,
        StatusCode::NOT_FOUND,
        "Managing products is switched off on this deployment (no operators are configured, or UI_MANAGE=false): products come from the stream only.",
    );
}

/// A new `Nats-Msg-Id` for a form.
pub fn new_message_id() -> String {
    format!("ui-{}", uuid::Uuid::new_v4())
}
