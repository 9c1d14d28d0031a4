//! The HTML pages: the product list, a product's detail, and the error pages.

use super::params::{self, Paging};
use super::state::{AppState, Unavailable};
use super::views;
use crate::product::Product;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// `GET /`: one page of the list, in id order, each id a link to its detail page.
#[handler]
pub async fn index(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let paging = match Paging::from_request(req) {
        Ok(paging) => paging,
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    match app_state(depot).page(paging.after, paging.limit).await {
        Ok(products) => {
            let next = next_page(&products, &paging).map(|query| format!("/?{query}"));
            let data = json!({
                "products": products,
                "next": next,
                "first_page": paging.after == 0,
            });
            render(res, StatusCode::OK, "index", &data);
        }
        Err(Unavailable(reason)) => unavailable(res, &reason),
    }
}

/// `GET /product?id=N`: one product. No id: a page that explains how to give one.
#[handler]
pub async fn product_page(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let id = match params::product_id(req.queries().get("id").map(String::as_str)) {
        Ok(Some(id)) => id,
        Ok(None) => return render(res, StatusCode::OK, "missing_id", &json!({})),
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    match app_state(depot).product(id).await {
        Ok(Some(product)) => {
            let data = json!({
                "product": &*product,
                "attributes": attribute_rows(&product),
            });
            render(res, StatusCode::OK, "product", &data);
        }
        Ok(None) => error_page(
            res,
            StatusCode::NOT_FOUND,
            &format!("There is no product with id {id}."),
        ),
        Err(Unavailable(reason)) => unavailable(res, &reason),
    }
}

/// The query string of the next page, if this one was full.
pub fn next_page(products: &[Arc<Product>], paging: &Paging) -> Option<String> {
    let last = products.last()?;
    (products.len() as u64 == paging.limit).then(|| paging.next_query(last.id))
}

/// Renders the error page with the status's name and a message for a person.
pub fn error_page(res: &mut Response, status: StatusCode, message: &str) {
    let data = json!({
        "status": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    render(res, status, "error", &data);
}

fn unavailable(res: &mut Response, reason: &str) {
    tracing::warn!(reason, "page unavailable");
    error_page(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "The catalogue cannot be read right now. Please try again in a moment.",
    );
}

fn render(res: &mut Response, status: StatusCode, template: &str, data: &impl Serialize) {
    match views::render(template, data) {
        Ok(html) => {
            res.status_code(status);
            res.render(Text::Html(html));
        }
        Err(_) => {
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            res.render(Text::Plain("This page could not be rendered."));
        }
    }
}

#[derive(Serialize)]
struct AttributeRow<'a> {
    name: &'a str,
    value: String,
}

fn attribute_rows(product: &Product) -> Vec<AttributeRow<'_>> {
    product
        .attributes
        .iter()
        .map(|(name, value)| AttributeRow {
            name,
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

pub fn app_state(depot: &Depot) -> &AppState {
    depot
        .get_typed::<AppState>()
        .expect("the router injects AppState before every handler")
}
