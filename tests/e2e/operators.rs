//! Who may change the catalogue: operators sign in (or a trusted proxy names
//! them), forms need a token the service issued to that session, and every
//! field a client sends is checked before it becomes a header or a log line.

use crate::common::{ALICE, BOB, SESSION_KEY, TestApp, no_redirect, unique_settings, wait_until};
use actors::http::session::{Session, SessionKey};
use actors::supervisor::RestartBudget;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A form posted to `route` with `fields`, the session `cookie` and an
/// `Origin`, as a browser (or a forger) would send it.
async fn post(
    app: &TestApp,
    route: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = no_redirect()
        .post(format!("{}{route}", app.base))
        .form(fields);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn without_operators_the_forms_are_404_and_no_page_links_to_them() {
    let mut settings = unique_settings();
    settings.manage.users_file = None;
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;
    for path in ["/manage/new", "/manage/edit?id=1", "/signin"] {
        let (status, page) = app.get_text(path).await;
        assert_eq!(status, 404, "{path}: {page}");
    }
    for route in ["/manage/save", "/manage/delete", "/signin", "/signout"] {
        let response = post(&app, route, None, None, &[("id", "1")]).await;
        assert_eq!(response.status(), 404, "{route}");
    }
    for path in ["/", "/product?id=1", "/rejected"] {
        let (_, page) = app.get_text(path).await;
        assert!(
            !page.contains("/manage/") && !page.contains("/signin"),
            "{path} links to managing: {page}"
        );
    }
}

#[test]
fn forms_asked_for_without_operators_are_refused_at_start_with_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_products"))
        .arg("config")
        .env_clear()
        .env("UI_MANAGE", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("UI_MANAGE") && stderr.contains("MANAGE_USERS_FILE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_operator_signs_in_manages_and_signs_out() {
    let app = TestApp::spawn().await;
    // Not signed in: the form sends the browser to sign in, and back after.
    let response = no_redirect()
        .get(format!("{}/manage/new", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/signin?next=%2Fmanage%2Fnew"
    );
    let (_, page) = app.get_text("/").await;
    assert!(page.contains("href=\"/signin\""), "{page}");
    assert!(!page.contains("/manage/new"), "{page}");

    let signed_in = no_redirect()
        .post(format!("{}/signin", app.base))
        .form(&[
            ("name", ALICE.0),
            ("password", ALICE.1),
            ("next", "/manage/new"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/manage/new");
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(flag), "{flag} in {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let (status, page) = app.get_signed_in(&cookie, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );
    assert!(page.contains("href=\"/manage/new\""), "{page}");
    let token = app.form_token(&cookie).await;

    let signed_out = post(
        &app,
        "/signout",
        Some(&cookie),
        None,
        &[("csrf", token.as_str())],
    )
    .await;
    assert_eq!(signed_out.status(), 303);
    let cleared = signed_out.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("products-session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn a_wrong_password_or_name_gets_one_message_slowed_and_counted() {
    let app = TestApp::spawn().await;
    let message = "The name or the password is wrong.";
    let try_sign_in = |name: &'static str, password: &'static str| {
        no_redirect()
            .post(format!("{}/signin", app.base))
            .form(&[("name", name), ("password", password)])
            .send()
    };
    let started = Instant::now();
    let wrong_password = try_sign_in(ALICE.0, "wrong").await.unwrap();
    let took = started.elapsed();
    assert_eq!(wrong_password.status(), 401);
    assert!(took >= Duration::from_millis(250), "slowed: {took:?}");
    assert!(wrong_password.headers().get("set-cookie").is_none());
    let wrong_password = wrong_password.text().await.unwrap();
    assert!(wrong_password.contains(message), "{wrong_password}");

    // This address just failed: a try at once is held back without its
    // password being checked, even the right one of another name.
    let held = try_sign_in(BOB.0, BOB.1).await.unwrap();
    assert_eq!(held.status(), 429);
    assert!(held.headers().contains_key("retry-after"));

    // Once the wait is over, an unknown name gets the same page as a wrong
    // password: nothing says which of the two was wrong.
    let deadline = Instant::now() + crate::common::DEADLINE;
    let unknown_name = loop {
        let response = try_sign_in("nobody", ALICE.1).await.unwrap();
        if response.status() != 429 {
            assert_eq!(response.status(), 401);
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "still held back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        unknown_name.replace("nobody", "NAME"),
        wrong_password.replace("alice", "NAME"),
        "the same page for either mistake"
    );

    let metrics = app.get_text("/metrics").await.1;
    let instance = crate::common::instance_name(&app.settings);
    let line = format!("products_sign_in_failures_total{{app=\"{instance}\"}} 2");
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");

    // Once the wait is over, the right password signs in.
    wait_until("bob may try again", || async {
        post(
            &app,
            "/signin",
            None,
            None,
            &[("name", BOB.0), ("password", BOB.1)],
        )
        .await
        .status()
            == 303
    })
    .await;
}

#[tokio::test]
async fn a_session_ends_when_idle_too_old_or_after_the_password_changed() {
    let app = TestApp::spawn().await;
    let key = SessionKey::new(SESSION_KEY.into()).unwrap();
    let hash = std::fs::read_to_string(crate::common::operators_file())
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("alice:").map(str::to_owned))
        .unwrap();
    let cookie = |session: &Session| format!("products-session={}", session.seal(&key));

    let fresh = Session::open(ALICE.0, &hash);
    let (status, _) = app.get_signed_in(&cookie(&fresh), "/manage/new").await;
    assert_eq!(status, 200, "a fresh session is signed in");

    let idle = app.settings.manage.session_idle.as_secs();
    let max = app.settings.manage.session_max.as_secs();
    let mut idle_too_long = fresh.clone();
    idle_too_long.seen -= idle + 1;
    let mut too_old = fresh.clone();
    too_old.issued -= max + 1;
    too_old.seen = too_old.issued + max;
    let other_password = Session::open(ALICE.0, "the hash before the password changed");
    for (what, session) in [
        ("idle", idle_too_long),
        ("too old", too_old),
        ("another password", other_password),
    ] {
        let (status, _) = app.get_signed_in(&cookie(&session), "/manage/new").await;
        assert_eq!(status, 303, "{what}: sent to sign in again");
    }
}

#[tokio::test]
async fn the_proxy_header_is_taken_from_a_trusted_address_only() {
    let mut settings = unique_settings();
    settings.manage.users_file = None;
    settings.manage.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let trusted = TestApp::spawn_with(settings, RestartBudget::default()).await;
    let mut settings = unique_settings();
    settings.manage.users_file = None;
    settings.manage.trusted_proxies = vec!["10.9.8.7/32".parse().unwrap()];
    let untrusted = TestApp::spawn_with(settings, RestartBudget::default()).await;

    let as_proxy = |app: &TestApp| {
        no_redirect()
            .get(format!("{}/manage/new", app.base))
            .header("X-Forwarded-User", "carol@example.com")
            .send()
    };
    let response = as_proxy(&trusted).await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Signed in as <strong>carol@example.com</strong>"),
        "{page}"
    );
    let response = as_proxy(&untrusted).await.unwrap();
    assert_eq!(response.status(), 303, "ignored: sent to sign in");

    // Operators sign in at the proxy: the service's own sign-in says so.
    let (status, page) = untrusted.get_text("/signin").await;
    assert_eq!(status, 200);
    assert!(page.contains("through the proxy"), "{page}");
    let refused = post(&untrusted, "/signin", None, None, &[("name", "carol")]).await;
    assert_eq!(refused.status(), 404);
}

#[tokio::test]
async fn forged_and_planted_tokens_are_refused_on_both_form_routes_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.publish(r#"{"id":32,"name":"kept","price":1,"manufacturer":"m"}"#)
        .await;
    app.wait_for_product(32).await;
    let alice = app.sign_in(ALICE).await;
    let token = app.form_token(&alice).await;
    let bob = app.sign_in(BOB).await;
    let bobs_token = app.form_token(&bob).await;
    let planted = format!("{alice}; csrf=0123456789abcdef0123456789abcdef");
    let origin = app.base.clone();
    let never_issued = "A".repeat(43);
    let planted_token = "0123456789abcdef0123456789abcdef";
    // (what, session cookie, Origin, token)
    let forged: [(&str, Option<&str>, Option<&str>, &str); 7] = [
        ("no session", None, None, &token),
        ("no token", Some(&alice), Some("null"), ""),
        (
            "a planted token",
            Some(&planted),
            Some("null"),
            planted_token,
        ),
        ("a token never issued", Some(&alice), None, &never_issued),
        (
            "another session's token",
            Some(&alice),
            Some(&origin),
            &bobs_token,
        ),
        (
            "a foreign origin",
            Some(&alice),
            Some("http://evil.example"),
            &token,
        ),
        (
            "Origin: null and a wrong token",
            Some(&alice),
            Some("null"),
            &bobs_token,
        ),
    ];
    for (route, id) in [("/manage/save", "31"), ("/manage/delete", "32")] {
        for (what, cookie, from, csrf) in forged {
            let fields = [
                ("csrf", csrf),
                ("id", id),
                ("name", "forged"),
                ("price", "1"),
                ("manufacturer", "m"),
            ];
            let response = post(&app, route, cookie, from, &fields).await;
            assert_eq!(response.status(), 403, "{route} with {what}");
        }
    }
    // Anything published would be stored before this marker.
    app.publish(r#"{"id":33,"name":"marker","price":1,"manufacturer":"m"}"#)
        .await;
    app.wait_for_product(33).await;
    assert_eq!(app.get("/products/31").await.status(), 404);
    assert_eq!(app.get_json("/products/32").await.1["name"], "kept");
    assert_eq!(app.rejected_count().await, 0, "nothing was published");

    // The right token (Origin: null says nothing) is taken.
    let sent = post(
        &app,
        "/manage/save",
        Some(&alice),
        Some("null"),
        &[
            ("csrf", token.as_str()),
            ("id", "31"),
            ("name", "real"),
            ("price", "1"),
            ("manufacturer", "m"),
        ],
    )
    .await;
    assert_eq!(sent.status(), 303);
    let waiting = sent.headers()["location"].to_str().unwrap().to_owned();
    assert!(waiting.starts_with("/manage/sent?stream="), "{waiting}");
    assert_eq!(app.wait_for_product(31).await["name"], "real");
    let (_, page) = app.get_text(&waiting).await;
    assert!(page.contains("Product 31 is stored"), "{page}");
}

#[tokio::test]
async fn a_control_character_in_any_form_field_is_a_400_that_names_the_field() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in(ALICE).await;
    let token = app.form_token(&alice).await;
    let save = [
        ("csrf", token.as_str()),
        ("message_id", "ui-form-1"),
        ("id", "5"),
        ("name", "pen"),
        ("price", "1"),
        ("manufacturer", "bic"),
        ("description", "a pen\r\nthat writes\tblue"),
        ("attributes", "{\n\"colour\": \"blue\"\n}"),
        ("editing", "5"),
    ];
    let delete = [
        ("csrf", token.as_str()),
        ("message_id", "ui-form-2"),
        ("id", "5"),
    ];
    let sign_in = [("name", "alice"), ("password", "x"), ("next", "/")];
    for (route, fields) in [
        ("/manage/save", &save[..]),
        ("/manage/delete", &delete[..]),
        ("/signin", &sign_in[..]),
    ] {
        for (field, _) in fields {
            // A line break where a header or a log line would take it, and
            // a bell (a control character no text area takes) everywhere.
            let bad = ["\r\nNats-Msg-Id: x", "\u{7}"];
            for control in bad {
                let multiline = ["description", "attributes"].contains(field);
                if multiline && control.starts_with('\r') {
                    continue;
                }
                let sent: Vec<(&str, String)> = fields
                    .iter()
                    .map(|(k, v)| {
                        let v = if k == field {
                            format!("{v}{control}")
                        } else {
                            (*v).to_owned()
                        };
                        (*k, v)
                    })
                    .collect();
                let sent: Vec<(&str, &str)> = sent.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let response = post(&app, route, Some(&alice), None, &sent).await;
                assert_eq!(response.status(), 400, "{route} {field} {control:?}");
                let page = response.text().await.unwrap();
                assert!(
                    page.contains(&format!("“{field}”")),
                    "{route} {field}: {page}"
                );
            }
        }
    }
    // Line breaks and tabs in the text areas are taken, and nothing above
    // was published.
    let sent = post(&app, "/manage/save", Some(&alice), None, &save).await;
    assert_eq!(sent.status(), 303);
    let stored = app.wait_for_product(5).await;
    assert_eq!(stored["description"], "a pen\r\nthat writes\tblue");
    assert_eq!(app.rejected_count().await, 0);
}

#[tokio::test]
async fn a_change_made_through_a_form_names_its_operator_and_a_publishers_does_not() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in(ALICE).await;
    let token = app.form_token(&alice).await;
    let sent = post(
        &app,
        "/manage/save",
        Some(&alice),
        None,
        &[
            ("csrf", token.as_str()),
            ("id", "40"),
            ("name", "desk"),
            ("price", "100"),
            ("manufacturer", "oak & co"),
            // Not a field of the form: the operator comes from the session.
            ("changed_by", "mallory"),
            ("operator", "mallory"),
        ],
    )
    .await;
    assert_eq!(sent.status(), 303);
    assert_eq!(app.wait_for_product(40).await["changed_by"], "alice");
    let (_, page) = app.get_text("/product?id=40").await;
    assert!(
        page.contains(r#"<dd data-field="changed_by">alice</dd>"#),
        "{page}"
    );

    // The same product from another publisher: no operator any more.
    app.publish(r#"{"id":40,"name":"desk v2","price":100,"manufacturer":"oak"}"#)
        .await;
    wait_until("the publisher's version is served", || async {
        app.get_json("/products/40").await.1["name"] == "desk v2"
    })
    .await;
    let (_, product) = app.get_json("/products/40").await;
    assert!(product.get("changed_by").is_none(), "{product}");
    let (_, page) = app.get_text("/product?id=40").await;
    assert!(
        page.contains("<span class=\"none\">a publisher</span>"),
        "{page}"
    );

    // A header that no operator's name could be is set aside with the reason.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Products-Operator", "eve:admin");
    app.js
        .publish_with_headers(
            app.settings.nats.subject.clone(),
            headers,
            r#"{"id":41,"name":"x","price":1,"manufacturer":"m"}"#.into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    wait_until("the message is set aside", || async {
        app.rejected_count().await == 1
    })
    .await;
    let (_, rejected) = app.get_text("/rejected").await;
    assert!(
        rejected.contains("the Products-Operator header must not contain"),
        "{rejected}"
    );
    assert_eq!(app.get("/products/41").await.status(), 404);
}

#[tokio::test]
async fn a_session_from_one_replica_is_taken_by_another_with_the_same_key() {
    let first = TestApp::spawn().await;
    // A second replica: the same database, stream and key, a durable of its own.
    let mut settings = first.settings.clone();
    settings.nats.durable = format!("{}-2", settings.nats.durable);
    let second = products::App::start(&settings, "second-replica", RestartBudget::default())
        .await
        .expect("the second replica starts");
    let second_base = format!("http://{}", second.http_addr());

    let alice = first.sign_in(ALICE).await;
    let token = first.form_token(&alice).await;
    let page = no_redirect()
        .get(format!("{second_base}/manage/new"))
        .header("Cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the other replica knows the session");
    let sent = no_redirect()
        .post(format!("{second_base}/manage/save"))
        .header("Cookie", &alice)
        .form(&[
            ("csrf", token.as_str()),
            ("id", "7"),
            ("name", "from the first replica's form"),
            ("price", "7"),
            ("manufacturer", "m"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303, "the other replica took the form");
    assert_eq!(first.wait_for_product(7).await["changed_by"], "alice");
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_session_key_a_random_one_is_made_and_the_log_says_what_that_means() {
    let settings = unique_settings();
    let _cleanup = crate::common::Cleanup::new(&settings);
    let users = crate::common::operators_file();
    let mut service = crate::common::process::ServiceProcess::start_with_env(
        &settings,
        &[("MANAGE_USERS_FILE", users.to_str().unwrap())],
    );
    let base = service.base().await;
    let status = reqwest::get(format!("{base}/signin"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "managing is on");
    let log = service.log();
    assert!(
        log.contains("MANAGE_SESSION_KEY is not set")
            && log.contains("sign in again after a restart"),
        "{log}"
    );
}

#[tokio::test]
async fn sign_ins_sent_together_are_held_back_not_checked_each() {
    let app = TestApp::spawn().await;
    let tries = futures::future::join_all((0..20).map(|_| {
        no_redirect()
            .post(format!("{}/signin", app.base))
            .form(&[("name", ALICE.0), ("password", "guess")])
            .send()
    }))
    .await;
    let statuses: Vec<u16> = tries
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(
        checked, 1,
        "one try checked, the others held back: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    let metrics = app.get_text("/metrics").await.1;
    let instance = crate::common::instance_name(&app.settings);
    let line = format!("products_sign_in_failures_total{{app=\"{instance}\"}} 1");
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_failures_are_counted_per_client_not_per_proxy() {
    let mut settings = unique_settings();
    settings.manage.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let app = TestApp::spawn_with(settings, RestartBudget::default()).await;
    let from = |client: &'static str, password: &'static str| {
        no_redirect()
            .post(format!("{}/signin", app.base))
            .header("X-Forwarded-For", client)
            .form(&[("name", BOB.0), ("password", password)])
            .send()
    };
    assert_eq!(from("198.51.100.7", "guess").await.unwrap().status(), 401);
    // The same client again at once is held back; another is not (its name
    // is, though: bob's name failed). Alice, from a third, signs in.
    assert_eq!(from("198.51.100.7", BOB.1).await.unwrap().status(), 429);
    let alice = no_redirect()
        .post(format!("{}/signin", app.base))
        .header("X-Forwarded-For", "203.0.113.9")
        .form(&[("name", ALICE.0), ("password", ALICE.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        alice.status(),
        303,
        "one client's failures are not every client's"
    );
}
