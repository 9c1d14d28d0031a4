//! The cache actor, driven through its messages, in front of a real database.

use crate::common::{
    Cleanup, batch, lock_products, prepared_database, product_message, spawn_persistence,
    statements_waiting_on_locks, unique_settings, wait_until, wait_until_within,
};
use actors::cache::{Cache, CacheArgs, CacheMsg, CacheRef, CacheStatus, ProductCache};
use actors::changes::{ChangeSignal, Commits};
use actors::health::Health;
use actors::names::{Child, Names};
use actors::persistence::{self, PersistenceMsg};
use catalogue::product::Product;
use ractor::Actor;
use std::time::Duration;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

struct Fixture {
    names: Names,
    /// Raised by the fixture's persistence when Postgres says products changed.
    changes: ChangeSignal,
    database_url: String,
    _cleanup: Cleanup,
}

impl Fixture {
    async fn sql(&self, sql: &str) {
        use sea_orm::ConnectionTrait;
        crate::common::connect(&self.database_url.as_str().into())
            .await
            .execute_unprepared(sql)
            .await
            .unwrap();
    }
}

/// A persistence actor over a fresh database holding `pen` (1) and `toy` (2).
async fn with_two_products() -> Fixture {
    let settings = unique_settings();
    let cleanup = prepared_database(&settings).await;
    let names = Names::new(crate::common::instance_name(&settings));
    let changes = ChangeSignal::default();
    let persistence = spawn_persistence(Some(&names), &settings, &changes).await;
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
        changes,
        database_url: settings.database.url.expose().to_owned(),
        _cleanup: cleanup,
    }
}

/// A cache actor over the fixture's persistence, listening to `changes`,
/// and the products it keeps.
async fn spawn_cache(
    names: &Names,
    changes: &ChangeSignal,
    invalidate_every: Duration,
) -> (CacheRef, ProductCache, Commits) {
    let products = ProductCache::new(names, 1 << 20);
    let commits = Commits::default();
    let cache = Actor::spawn(
        Some(names.of(Child::Cache)),
        Cache,
        CacheArgs {
            names: names.clone(),
            health: Health::new(),
            products: products.clone(),
            changes: changes.clone(),
            commits: commits.clone(),
            invalidate_every,
            catch_up_max_rows: 10_000,
        },
    )
    .await
    .unwrap()
    .0;
    wait_until("the cache is rebuilt", || async {
        status(&cache).await.rebuilt
    })
    .await;
    (cache, products, commits)
}

async fn status(cache: &CacheRef) -> CacheStatus {
    cache
        .call(|reply| CacheMsg::Status { reply }, TIMEOUT)
        .await
        .unwrap()
        .unwrap()
}

async fn get(products: &ProductCache, id: i64) -> Option<Product> {
    products
        .get(id)
        .await
        .unwrap()
        .map(|cached| cached.product())
}

/// Hands `product` to the cache as the writer does after a commit, and
/// waits until it is served.
async fn put(commits: &Commits, product: Product) {
    commits
        .publish(vec![product], TIMEOUT.expect("a timeout is set"))
        .await
        .expect("the cache serves what is committed");
}

#[tokio::test]
async fn the_cache_rebuilds_from_postgres_and_keeps_the_newer_of_two_versions() {
    let fixture = with_two_products().await;
    let (cache, products, commits) =
        spawn_cache(&fixture.names, &fixture.changes, Duration::from_secs(3600)).await;
    assert_eq!(status(&cache).await.entries, 2);
    let pen = get(&products, 1).await.unwrap();
    assert_eq!(pen.name, "pen");

    let mut newer = pen.clone();
    newer.price = 11;
    newer.revision += 1;
    put(&commits, newer).await;
    assert_eq!(get(&products, 1).await.unwrap().price, 11);

    let mut older = pen.clone();
    older.price = 9;
    older.revision -= 1;
    put(&commits, older).await;
    assert_eq!(
        get(&products, 1).await.unwrap().price,
        11,
        "the newer stays"
    );
    assert!(get(&products, 999).await.is_none());
}

#[tokio::test]
async fn writes_made_by_hand_in_sql_reach_the_cache_at_once() {
    let fixture = with_two_products().await;
    let (_cache, products, _commits) =
        spawn_cache(&fixture.names, &fixture.changes, Duration::from_secs(3600)).await;
    assert_eq!(get(&products, 1).await.unwrap().price, 10);
    assert_eq!(products.page(0, 10).await.unwrap().products.len(), 2);

    fixture
        .sql("UPDATE products SET price = 99 WHERE id = 1")
        .await;
    fixture.sql("DELETE FROM products WHERE id = 2").await;
    fixture
        .sql(
            "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
             VALUES (3, 'lamp', 30, 'ikea', 'by hand', 0)",
        )
        .await;
    wait_until("the cache shows the three writes", || async {
        let page = products.page(0, 10).await.unwrap();
        let listed: Vec<_> = page
            .products
            .iter()
            .map(|p| (p.id, p.product().price))
            .collect();
        listed == [(1, 99), (3, 30)]
    })
    .await;
    assert!(get(&products, 2).await.is_none());
}

#[tokio::test]
async fn an_invalidation_catches_up_without_a_signal_and_keeps_the_rest_warm() {
    let fixture = with_two_products().await;
    // The cache hears no signal: only its timer can tell it what changed.
    let deaf = ChangeSignal::default();
    let (cache, products, _commits) =
        spawn_cache(&fixture.names, &deaf, Duration::from_millis(300)).await;
    fixture
        .sql("UPDATE products SET price = 99 WHERE id = 1")
        .await;
    let before = status(&cache).await.invalidations;
    wait_until("an invalidation has caught up", || async {
        get(&products, 1).await.unwrap().price == 99
    })
    .await;
    assert!(status(&cache).await.invalidations > before);

    // Postgres goes away: both products are still served, from memory.
    persistence::peer(&fixture.names).get().unwrap().stop(None);
    wait_until("persistence is gone", || async {
        persistence::peer(&fixture.names).get().is_none()
    })
    .await;
    assert_eq!(get(&products, 1).await.unwrap().price, 99);
    assert_eq!(get(&products, 2).await.unwrap().name, "toy");
    assert!(
        products.get(999).await.is_err(),
        "an id never cached cannot be answered"
    );
}

#[tokio::test]
async fn an_unknown_id_is_remembered_as_absent_until_it_is_written() {
    let fixture = with_two_products().await;
    let (_cache, products, _commits) =
        spawn_cache(&fixture.names, &fixture.changes, Duration::from_secs(3600)).await;
    assert!(get(&products, 7).await.is_none());
    fixture
        .sql(
            "INSERT INTO products (id, name, price, manufacturer, stream, stream_seq) \
             VALUES (7, 'lamp', 30, 'ikea', 'by hand', 0)",
        )
        .await;
    // The absence does not expire by itself (the block is cached): the feed replaced it.
    wait_until_within(
        "the new product replaces its absence",
        Duration::from_secs(2),
        || async { get(&products, 7).await.is_some() },
    )
    .await;
}

#[tokio::test]
async fn concurrent_misses_for_one_id_share_one_read() {
    const CLIENTS: usize = 8;
    let fixture = with_two_products().await;
    // No signal and no timer: nothing but the misses reads the table.
    let deaf = ChangeSignal::default();
    let (_cache, products, _commits) =
        spawn_cache(&fixture.names, &deaf, Duration::from_secs(3600)).await;
    products.clear();

    // Every read of the table waits while the test holds this lock, so the
    // reads the cache makes can be counted in pg_stat_activity.
    let db = crate::common::connect(&fixture.database_url.as_str().into()).await;
    let lock = lock_products(&db).await;
    let gets: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let products = products.clone();
            tokio::spawn(async move { products.get(2).await })
        })
        .collect();
    let observer = crate::common::connect(&fixture.database_url.as_str().into()).await;
    wait_until("a read waits on the lock", || async {
        statements_waiting_on_locks(&observer).await > 0
    })
    .await;
    // The other misses must wait on that read, not start their own: watch
    // for one second (within the cache's 3 s wait on Postgres), in which
    // separate reads would show up at once.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < watch_until {
        let waiting = statements_waiting_on_locks(&observer).await;
        assert_eq!(
            waiting, 1,
            "{CLIENTS} concurrent misses made {waiting} reads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lock.commit().await.unwrap();
    for get in gets {
        assert_eq!(get.await.unwrap().unwrap().unwrap().product().name, "toy");
    }
}

#[tokio::test]
async fn a_write_stored_during_a_rebuild_is_not_hidden_by_the_rebuilds_older_read() {
    let fixture = with_two_products().await;
    let persistence = persistence::peer(&fixture.names).get().unwrap();
    // A cache whose rebuild has begun: it read block 0 (ids 0 to 63) ...
    let products = ProductCache::new(&fixture.names, 1 << 20);
    let generation = products.generation();
    let read_before =
        crate::common::ask_persistence(&persistence, |reply| PersistenceMsg::Versions {
            from: 0,
            until: 63,
            limit: 64,
            reply,
        })
        .await;
    // ... then a write commits, and ingest puts it before acking it ...
    fixture
        .sql("UPDATE products SET price = 99 WHERE id = 1")
        .await;
    let stored =
        crate::common::ask_persistence(&persistence, |reply| PersistenceMsg::Get { id: 1, reply })
            .await
            .unwrap();
    products.put([std::sync::Arc::new(stored)]).await;
    // ... and only then does the rebuild fill block 0 from its older read.
    products.fill(read_before, generation).await;
    assert_eq!(get(&products, 1).await.unwrap().price, 99);
}
