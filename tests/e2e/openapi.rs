//! `GET /openapi.json`: every route the router serves as JSON is described (the
//! routes are read from the router itself, and each is asked what it serves),
//! the HTML pages are not, and every example in the description is what the
//! running service answers to the request it is named after.

use crate::common::TestApp;
use products::produce::SAMPLES;
use salvo::Router;
use salvo::http::Method;
use salvo::routing::FilterInfo;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Every `(method, path)` the router has a handler for, its path written as
/// OpenAPI writes it (`/products/{id}`).
fn served_routes(router: &Router) -> BTreeSet<(Method, String)> {
    fn walk(
        router: &Router,
        path: &str,
        method: Option<&Method>,
        out: &mut BTreeSet<(Method, String)>,
    ) {
        let mut path = path.to_owned();
        let mut method = method.cloned();
        for filter in router.filters() {
            match filter.info() {
                FilterInfo::Path(segment) => {
                    let segment = segment.trim_matches('/');
                    if !segment.is_empty() {
                        path = format!("{}/{segment}", path.trim_end_matches('/'));
                    }
                }
                FilterInfo::Method(m) => method = Some(m),
                other => panic!("a route filter the test does not know: {other:?}"),
            }
        }
        if router.goal.is_some() {
            let method = method.clone().expect("every route names its method");
            out.insert((
                method,
                if path.is_empty() {
                    "/".into()
                } else {
                    path.clone()
                },
            ));
        }
        for child in router.routers() {
            walk(child, &path, method.as_ref(), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(router, "", None, &mut out);
    out
}

/// A concrete request path for a route's template.
fn request_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{id}" => "1",
            "{**path}" => "style.css",
            s if s.starts_with('{') => panic!("give the test a sample value for {s} in {template}"),
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A service that holds the samples of `products produce`: `pen` (id 1) and
/// `toy` (id 2), published one after the other, and is ready.
async fn app_with_the_samples() -> TestApp {
    let app = TestApp::spawn().await;
    for (id, sample) in (1..).zip(SAMPLES) {
        app.publish(sample).await;
        app.wait_for_product(id).await;
    }
    app.wait_for_readiness("cache", true).await;
    app.wait_for_readiness("nats", true).await;
    app
}

#[tokio::test]
async fn every_json_route_the_router_serves_is_described_and_no_html_page_is() {
    let app = app_with_the_samples().await;
    let (status, description) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        description["openapi"].as_str().unwrap().starts_with("3."),
        "{description}"
    );
    let paths = description["paths"].as_object().expect("paths");

    let routes = served_routes(&actors::http::router());
    let mut json_routes = BTreeSet::new();
    for (method, template) in &routes {
        let form_route = template.starts_with("/manage/")
            || ["/signin", "/signout"].contains(&template.as_str());
        if *method == Method::POST && form_route {
            // The web UI's forms post here: pages, not the JSON API.
            assert!(
                description["paths"][template].is_null(),
                "POST {template} is a form's, not the JSON API's"
            );
            continue;
        }
        assert_eq!(
            *method,
            Method::GET,
            "{template}: the test asks with GET only"
        );
        let response = app.get(&request_path(template)).await;
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let operation = &description["paths"][template]["get"];
        // JSON, or JSON a line (the change stream and the snapshot).
        if content_type.starts_with("application/json")
            || content_type.starts_with("application/x-ndjson")
        {
            assert!(
                operation.is_object(),
                "GET {template} serves JSON ({content_type}) but is not described"
            );
            json_routes.insert(template.clone());
        } else {
            assert!(
                description["paths"][template].is_null(),
                "GET {template} serves {content_type}: it does not belong in the JSON API's description"
            );
        }
    }
    // Nothing described that the router does not serve as JSON.
    let described: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(described, json_routes);
    for must in [
        "/products",
        "/products/{id}",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(json_routes.contains(must), "{must} is served as JSON");
    }
    for page in ["/", "/product"] {
        assert!(routes.contains(&(Method::GET, page.to_owned())), "{page}");
    }

    // The paging, the freshness parameters and the error shape are described.
    let list = &description["paths"]["/products"]["get"];
    let parameters: BTreeSet<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["in"], "query", "{p}");
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        parameters,
        BTreeSet::from([
            "after",
            "limit",
            "q",
            "manufacturer",
            "min_price",
            "max_price",
            "min_seq",
            "wait"
        ])
    );
    let one: BTreeSet<&str> = description["paths"]["/products/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(one, BTreeSet::from(["id", "min_seq", "wait"]));
    assert!(
        list["responses"]["200"]["headers"]["Link"].is_object(),
        "{list}"
    );
    let error = &description["components"]["schemas"]["Error"];
    assert_eq!(
        error["required"],
        json!(["type", "title", "status", "detail", "error"]),
        "{error}"
    );
    for (path, status) in [
        ("/products", "400"),
        ("/products", "503"),
        ("/products/{id}", "400"),
        ("/products/{id}", "404"),
        ("/products/{id}", "503"),
    ] {
        let schema = &description["paths"][path]["get"]["responses"][status]["content"]["application/problem+json"]
            ["schema"];
        assert_eq!(
            schema["$ref"], "#/components/schemas/Error",
            "{path} {status}: {schema}"
        );
    }
}

/// Each `updated_at` in `served` (a time of this run) checked to be RFC 3339
/// in UTC, then set to the example's, which no example can know either.
fn stored_times_as_in(served: &mut Value, example: &Value, name: &str) {
    match (served, example) {
        (Value::Object(served), Value::Object(example)) => {
            for (key, value) in served.iter_mut() {
                let Some(expected) = example.get(key) else {
                    continue;
                };
                if key == "updated_at" {
                    let time = value.as_str().unwrap_or_default();
                    assert!(
                        time.ends_with('Z') && humantime::parse_rfc3339(time).is_ok(),
                        "{name}: updated_at {value} is not RFC 3339 in UTC"
                    );
                    *value = expected.clone();
                } else {
                    stored_times_as_in(value, expected, name);
                }
            }
        }
        (Value::Array(served), Value::Array(example)) => {
            for (value, expected) in served.iter_mut().zip(example) {
                stored_times_as_in(value, expected, name);
            }
        }
        _ => {}
    }
}

/// Counts the examples anywhere in `value` (an `example`, or each entry of an
/// `examples` map).
fn count_examples(value: &Value) -> usize {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| match key.as_str() {
                "example" => 1,
                "examples" => value.as_object().map_or(1, |examples| examples.len()),
                _ => count_examples(value),
            })
            .sum(),
        Value::Array(items) => items.iter().map(count_examples).sum(),
        _ => 0,
    }
}

#[tokio::test]
async fn every_example_in_the_description_is_what_the_service_answers() {
    let app = app_with_the_samples().await;
    let (_, description) = app.get_json("/openapi.json").await;

    let mut checked = 0;
    for (path, item) in description["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                for (content_type, media) in content {
                    let Some(examples) = media["examples"].as_object() else {
                        continue;
                    };
                    for (name, example) in examples {
                        let request = name.strip_prefix("GET ").unwrap_or_else(|| {
                            panic!("{path}: the example {name:?} is not named after a GET request")
                        });
                        assert!(
                            request == path
                                || request.starts_with(&format!("{path}?"))
                                || path.contains('{'),
                            "{name:?} is not a request to {path}"
                        );
                        assert_eq!(method, "get", "{path}");
                        let response = app.get(request).await;
                        assert_eq!(response.status().as_u16().to_string(), *status, "{name}");
                        let served_type = response.headers()["content-type"].to_str().unwrap();
                        assert!(
                            served_type.starts_with(content_type),
                            "{name}: {served_type}"
                        );
                        let request_id = response.headers().get("x-request-id").cloned();
                        let mut body: Value = response.json().await.unwrap();
                        // A problem's `request_id` is its answer's own, which
                        // no example can know.
                        if let Some(id) = body.as_object_mut().and_then(|b| b.remove("request_id"))
                        {
                            assert_eq!(
                                Some(id.as_str().unwrap()),
                                request_id.as_ref().map(|h| h.to_str().unwrap()),
                                "{name}"
                            );
                        }
                        stored_times_as_in(&mut body, &example["value"], name);
                        assert_eq!(body, example["value"], "{name}: the service answers {body}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(
        count_examples(&description),
        checked,
        "every example in the description is checked here"
    );
    assert!(checked >= 8, "only {checked} examples");

    // The one the summary says has a Link header has it.
    let response = app.get("/products?limit=1").await;
    assert_eq!(
        response.headers()["link"],
        r#"</products?after=1&limit=1>; rel="next""#
    );
}
