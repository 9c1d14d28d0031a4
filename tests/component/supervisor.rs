//! The supervisor: a failed child comes back, and too many failures stop the app.

use crate::common::{TestApp, unique_settings, wait_until};
use actors::cache::{CacheMsg, CacheStatus};
use actors::supervisor::RestartBudget;
use std::time::Duration;

#[tokio::test]
async fn a_killed_child_is_restarted_and_a_restarted_cache_is_rebuilt_from_postgres() {
    let app = TestApp::spawn().await;
    for payload in ::products::produce::SAMPLES {
        app.publish(payload).await;
    }
    app.wait_for_list_len(2).await;
    let names = app.app().names().clone();

    let old_cache = actors::cache::peer(&names).get().unwrap();
    old_cache.kill();
    wait_until(
        "a new cache actor is rebuilt with both products",
        || async {
            let Some(cache) = actors::cache::peer(&names).get() else {
                return false;
            };
            if cache.get_id() == old_cache.get_id() {
                return false;
            }
            let status = cache
                .call(
                    |reply| CacheMsg::Status { reply },
                    Some(Duration::from_secs(5)),
                )
                .await;
            matches!(
                status,
                Ok(ractor::rpc::CallResult::Success(CacheStatus {
                    rebuilt: true,
                    entries: 2,
                    ..
                }))
            )
        },
    )
    .await;

    // Kill ingest and persistence too: the next message still makes it through.
    for child in [
        ractor::registry::where_is(names.of(actors::names::Child::Ingest)).unwrap(),
        ractor::registry::where_is(names.of(actors::names::Child::Persistence)).unwrap(),
    ] {
        child.kill();
    }
    app.publish(r#"{"name":"kite","price":5,"manufacturer":"acme"}"#)
        .await;
    let list = app.wait_for_list_len(3).await;
    assert_eq!(list[2]["name"], "kite");

    // And http: the same address serves again.
    let old_http = ractor::registry::where_is(names.of(actors::names::Child::Http)).unwrap();
    old_http.kill();
    wait_until("http serves again after its restart", || async {
        ractor::registry::where_is(names.of(actors::names::Child::Http))
            .is_some_and(|cell| cell.get_id() != old_http.get_id())
            && app
                .http
                .get(format!("{}/healthz", app.base))
                .send()
                .await
                .is_ok()
    })
    .await;
}

#[tokio::test]
async fn too_many_restarts_stop_the_app_with_an_error() {
    let budget = RestartBudget {
        max_restarts: 1,
        within: Duration::from_secs(60),
    };
    let mut app = TestApp::spawn_with(unique_settings(), budget).await;
    let names = app.app().names().clone();
    let running = app.app.take().unwrap();
    let outcome = tokio::spawn(running.run_until(std::future::pending()));

    for _ in 0..2 {
        let Some(cache) = actors::cache::peer(&names).get() else {
            break;
        };
        let old = cache.get_id();
        cache.kill();
        wait_until("the cache is gone or restarted", || async {
            actors::cache::peer(&names)
                .get()
                .is_none_or(|c| c.get_id() != old)
        })
        .await;
    }
    let result = tokio::time::timeout(Duration::from_secs(20), outcome)
        .await
        .expect("the app stops by itself")
        .unwrap();
    let error = result.expect_err("the app reports the failure");
    assert!(
        error.to_string().contains("too many actor restarts"),
        "{error}"
    );
}

#[tokio::test]
async fn a_writer_that_dies_takes_persistence_with_it_and_both_are_restarted() {
    let app = TestApp::spawn().await;
    let names = app.app().names().clone();
    app.publish(r#"{"id":1,"name":"pen","price":10,"manufacturer":"bic"}"#)
        .await;
    app.wait_for_product(1).await;

    let persistence = |names: &actors::names::Names| {
        ractor::registry::where_is(names.of(actors::names::Child::Persistence))
    };
    let old_persistence = persistence(&names).unwrap().get_id();
    let old_writer = ractor::registry::where_is(names.writer()).unwrap();
    old_writer.kill();
    wait_until("persistence and its writer are new actors", || async {
        persistence(&names).is_some_and(|p| p.get_id() != old_persistence)
            && ractor::registry::where_is(names.writer())
                .is_some_and(|w| w.get_id() != old_writer.get_id())
    })
    .await;

    app.publish(r#"{"id":2,"name":"toy","price":100,"manufacturer":"lego"}"#)
        .await;
    app.wait_for_product(2).await;
}
