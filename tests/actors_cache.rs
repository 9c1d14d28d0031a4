//! The cache actor, driven through its messages, in front of a real database.

use crate::common::{
    Cleanup, batch, prepared_database, product_message, spawn_persistence, unique_settings,
    wait_until,
};
use actors::cache::{Cache, CacheArgs, CacheMsg, CacheRef, CacheStatus};
use actors::health::Health;
use actors::names::{Child, Names};
use actors::persistence::{self, PersistenceMsg};
use actors::product::Product;
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

struct Fixture {
    names: Names,
    _cleanup: Cleanup,
}

/// A persistence actor over a fresh database holding `pen` (1) and `toy` (2).
async fn with_two_products() -> Fixture {
    let settings = unique_settings();
    let cleanup = prepared_database(&settings).await;
    let names = Names::new(crate::common::instance_name(&settings));
    let persistence = spawn_persistence(Some(&names), &settings).await;
    let batch = batch(
        "S@1",
        vec![
            product_message(1, Some(1), "pen", 10),
            product_message(2, Some(2), "toy", 10),
        ],
    );
    persistence
        .call(|reply| PersistenceMsg::StoreBatch { batch, reply }, TIMEOUT)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    Fixture {
        names,
        _cleanup: cleanup,
    }
}

async fn spawn_cache(names: &Names, invalidate_every: Duration) -> CacheRef {
    Actor::spawn(
        Some(names.of(Child::Cache)),
        Cache,
        CacheArgs {
            names: names.clone(),
            health: Health::new(),
            capacity: 1000,
            invalidate_every,
        },
    )
    .await
    .unwrap()
    .0
}

async fn status(cache: &CacheRef) -> CacheStatus {
    cache
        .call(|reply| CacheMsg::Status { reply }, TIMEOUT)
        .await
        .unwrap()
        .unwrap()
}

async fn get(cache: &CacheRef, id: i64) -> Option<Arc<Product>> {
    cache
        .call(|reply| CacheMsg::Get { id, reply }, TIMEOUT)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_cache_rebuilds_from_postgres_then_puts_gets_and_invalidates() {
    let fixture = with_two_products().await;
    let cache = spawn_cache(&fixture.names, Duration::from_secs(3600)).await;

    wait_until("the cache is rebuilt", || async {
        let status = status(&cache).await;
        status.rebuilt && status.entries == 2
    })
    .await;
    assert_eq!(get(&cache, 1).await.unwrap().name, "pen");

    // A put is served at once.
    let mut newer = (*get(&cache, 1).await.unwrap()).clone();
    newer.price = 11;
    newer.version.seq += 1;
    cache
        .call(
            |reply| CacheMsg::Put {
                products: vec![newer],
                reply,
            },
            TIMEOUT,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(get(&cache, 1).await.unwrap().price, 11);

    // After an invalidation a get reads through to Postgres, which still holds
    // price 10: the put above was not stored.
    cache.cast(CacheMsg::Invalidate).unwrap();
    assert_eq!(get(&cache, 1).await.unwrap().price, 10);
    assert!(get(&cache, 999).await.is_none());
}

#[tokio::test]
async fn a_stale_product_is_served_while_postgres_cannot_be_read() {
    let fixture = with_two_products().await;
    let cache = spawn_cache(&fixture.names, Duration::from_secs(3600)).await;
    wait_until("the cache is rebuilt", || async {
        status(&cache).await.rebuilt
    })
    .await;

    persistence::peer(&fixture.names).get().unwrap().stop(None);
    wait_until("persistence is gone", || async {
        persistence::peer(&fixture.names).get().is_none()
    })
    .await;
    cache.cast(CacheMsg::Invalidate).unwrap();

    assert_eq!(get(&cache, 1).await.unwrap().name, "pen");
    let unknown = cache
        .call(|reply| CacheMsg::Get { id: 999, reply }, TIMEOUT)
        .await
        .unwrap()
        .unwrap();
    assert!(unknown.is_err(), "an id never cached cannot be answered");
}

#[tokio::test]
async fn the_cache_is_invalidated_on_its_timer() {
    let fixture = with_two_products().await;
    let cache = spawn_cache(&fixture.names, Duration::from_millis(300)).await;
    wait_until("the cache is rebuilt", || async {
        status(&cache).await.rebuilt
    })
    .await;
    // A version Postgres does not hold is served until the next invalidation.
    let before = status(&cache).await.invalidations;
    let mut unstored = (*get(&cache, 1).await.unwrap()).clone();
    unstored.price = 11;
    unstored.version.seq += 1;
    cache
        .call(
            |reply| CacheMsg::Put {
                products: vec![unstored],
                reply,
            },
            TIMEOUT,
        )
        .await
        .unwrap()
        .unwrap();
    // The put lands in generation `before` or the one after (at most one tick
    // can come between): two more ticks make it stale for sure.
    wait_until("the timer invalidates the cache twice more", || async {
        status(&cache).await.invalidations >= before + 2
    })
    .await;
    assert_eq!(get(&cache, 1).await.unwrap().price, 10);
}

#[tokio::test]
async fn concurrent_misses_for_one_id_all_get_the_product() {
    let fixture = with_two_products().await;
    let cache = spawn_cache(&fixture.names, Duration::from_secs(3600)).await;
    cache.cast(CacheMsg::Invalidate).unwrap();
    let gets = (0..50).map(|_| get(&cache, 2));
    let results = futures::future::join_all(gets).await;
    assert!(results.iter().all(|p| p.as_ref().unwrap().name == "toy"));
}
