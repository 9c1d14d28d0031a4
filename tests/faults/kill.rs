//! `kill -9` of the service in the middle of a backlog, again and again: after
//! the last restart each product holds its last version, nothing is missing,
//! nothing is duplicated, and HTTP serves the same. Also SIGTERM: the process
//! finishes its batch and exits 0 within a few seconds.

use crate::common::process::ServiceProcess;
use crate::common::{
    Cleanup, DEADLINE, connect, init_logs, jetstream_with_stream, prepared_database,
    unique_settings, wait_until, wait_until_within,
};
use async_nats::jetstream;
use bytes::Bytes;
use products::settings::Settings;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// Many updates per id, plus id-less products, in stream order. Each round
/// goes from the highest id down, so the first batch already holds the highest
/// id and the ids the service assigns never land on one the workload updates
/// later (which would be a publisher replacing that product, by contract).
struct Workload {
    ids: i64,
    updates_per_id: i64,
    /// One id-less product after every this many messages.
    id_less_every: usize,
}

impl Workload {
    fn messages(&self) -> Vec<Bytes> {
        let mut messages = Vec::new();
        let mut new_products = 0;
        for version in 1..=self.updates_per_id {
            for id in (1..=self.ids).rev() {
                let update = json!({"id": id, "name": format!("p{id}"), "price": version, "manufacturer": "m"});
                messages.push(Bytes::from(update.to_string()));
                if messages.len() % self.id_less_every == 0 {
                    new_products += 1;
                    let created = json!({"name": format!("new-{new_products}"), "price": 1, "manufacturer": "m"});
                    messages.push(Bytes::from(created.to_string()));
                }
            }
        }
        messages
    }
}

/// What a run of kills measured.
struct Outcome {
    messages: usize,
    kills: usize,
    lost: i64,
    duplicates: i64,
    stale: i64,
    recovery: Duration,
}

impl Outcome {
    fn report(&self) {
        eprintln!(
            "messages={} kills={} lost={} duplicates={} stale={} recovery={:.1?}",
            self.messages, self.kills, self.lost, self.duplicates, self.stale, self.recovery
        );
    }
}

async fn kill_repeatedly(workload: Workload, kills: usize) -> Outcome {
    init_logs();
    let mut settings = unique_settings();
    // In-flight messages of a killed process come back after this.
    settings.nats.ack_wait = Duration::from_secs(2);
    let _cleanup = Cleanup::new(&settings);
    let (js, _) = jetstream_with_stream(&settings).await;

    let messages = workload.messages();
    let total = messages.len();
    let id_less = total as i64 - workload.ids * workload.updates_per_id;

    // The first message (the highest id) is stored before any kill, so that
    // every id the service assigns lies above the ids the workload updates.
    let (first, rest) = messages.split_first().unwrap();
    publish_in_order(&js, &settings, std::slice::from_ref(first)).await;
    let mut service = ServiceProcess::start(&settings);
    wait_until("the first message is stored", || async {
        outstanding(&js, &settings).await == 0
    })
    .await;
    // Stopped while each chunk is published, so that every round starts with
    // a backlog: a running service could drain a chunk before `before` is
    // read, and then wait in vain for it to shrink.
    let status = service.terminate(DEADLINE).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let mut chunks = rest.chunks(rest.len().div_ceil(kills + 1));
    for round in 1..=kills {
        publish_in_order(&js, &settings, chunks.next().unwrap()).await;
        let before = outstanding(&js, &settings).await;
        assert!(before > 0, "round {round} starts with nothing to store");
        service.restart();
        // Kill as soon as this incarnation has stored and acked something.
        wait_until("the service acks part of the backlog", || async {
            outstanding(&js, &settings).await < before
        })
        .await;
        service.kill_9();
    }
    for rest in chunks {
        publish_in_order(&js, &settings, rest).await;
    }

    let started = Instant::now();
    service.restart();
    // The service's log is printed if this fails (see `ServiceProcess`).
    wait_until_within("the backlog is drained", DEADLINE * 10, || async {
        outstanding(&js, &settings).await == 0
    })
    .await;
    let recovery = started.elapsed();

    // Postgres: every id at its last version, each id-less product once.
    let db = connect(&settings.database.url).await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, name, price FROM products",
        ))
        .await
        .unwrap();
    let mut stale = 0;
    let mut named_new = Vec::new();
    for row in &rows {
        let id: i64 = row.try_get("", "id").unwrap();
        let name: String = row.try_get("", "name").unwrap();
        let price: i64 = row.try_get("", "price").unwrap();
        if id <= workload.ids {
            stale += i64::from(price != workload.updates_per_id);
        } else {
            named_new.push(name);
        }
    }
    let distinct_new: HashSet<_> = named_new.iter().collect();
    let expected = workload.ids + id_less;
    let found = distinct_new.len() as i64
        + rows
            .iter()
            .filter(|r| r.try_get::<i64>("", "id").unwrap() <= workload.ids)
            .count() as i64;

    // HTTP serves the same.
    let http = reqwest::Client::new();
    let base = service.base().await;
    wait_until("the restarted service answers", || async {
        http.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;
    for id in 1..=workload.ids {
        let product: serde_json::Value = http
            .get(format!("{base}/products/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            product["price"], workload.updates_per_id,
            "product {id} over HTTP"
        );
    }
    let listed: Vec<serde_json::Value> = http
        .get(format!("{base}/products?limit=1000&after={}", workload.ids))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if id_less <= 1000 {
        assert_eq!(listed.len() as i64, id_less, "id-less products over HTTP");
    }

    Outcome {
        messages: total,
        kills,
        lost: (expected - found).max(0),
        duplicates: rows.len() as i64 - found + (named_new.len() - distinct_new.len()) as i64,
        stale,
        recovery,
    }
}

/// Publishes one after the other (so the stream keeps this order), waiting
/// for the acks in groups.
async fn publish_in_order(js: &jetstream::Context, settings: &Settings, messages: &[Bytes]) {
    for group in messages.chunks(500) {
        let mut acks = Vec::with_capacity(group.len());
        for message in group {
            acks.push(
                js.publish(settings.nats.subject.clone(), message.clone())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}

/// Messages not yet acked by the durable consumer (0 before it exists).
async fn outstanding(js: &jetstream::Context, settings: &Settings) -> u64 {
    let stream = js.get_stream(&settings.nats.stream).await.unwrap();
    let total = stream.cached_info().state.messages;
    match stream
        .get_consumer::<jetstream::consumer::pull::Config>(&settings.nats.durable)
        .await
    {
        Ok(mut consumer) => {
            let info = consumer.info().await.unwrap();
            info.num_pending + info.num_ack_pending as u64
        }
        Err(_) => total,
    }
}

#[tokio::test]
async fn a_few_kill_9s_mid_backlog_lose_nothing_and_duplicate_nothing() {
    let outcome = kill_repeatedly(
        Workload {
            ids: 50,
            updates_per_id: 60,
            id_less_every: 30,
        },
        3,
    )
    .await;
    outcome.report();
    assert_eq!((outcome.lost, outcome.duplicates, outcome.stale), (0, 0, 0));
}

/// The long form: ≥ 20 kills over ≥ 100k messages. Run it with
/// `cargo nextest run --run-ignored only kill_9_long` (see docs/RELIABILITY.md).
#[tokio::test]
#[ignore = "long: about half a minute, and more to build"]
async fn kill_9_long_twenty_kills_over_a_hundred_thousand_messages() {
    let outcome = kill_repeatedly(
        Workload {
            ids: 1000,
            updates_per_id: 100,
            id_less_every: 100,
        },
        20,
    )
    .await;
    outcome.report();
    assert_eq!((outcome.lost, outcome.duplicates, outcome.stale), (0, 0, 0));
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0_within_seconds() {
    let mut settings = unique_settings();
    // Longer than the deadline of every wait below.
    settings.nats.ack_wait = Duration::from_secs(60);
    let _cleanup = prepared_database(&settings).await;
    // Each batch spends half a second in Postgres, so that the batch seen in
    // flight below is still in flight when the signal comes.
    let db = connect(&settings.database.url).await;
    for statement in [
        "CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql \
         AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$",
        "CREATE TRIGGER slow_batch BEFORE INSERT ON products \
         FOR EACH STATEMENT EXECUTE FUNCTION slow_batch()",
    ] {
        db.execute_unprepared(statement).await.unwrap();
    }
    let (js, _) = jetstream_with_stream(&settings).await;
    let backlog = Workload {
        ids: 100,
        updates_per_id: 30,
        id_less_every: 1_000_000,
    }
    .messages();
    publish_in_order(&js, &settings, &backlog).await;

    // No drain: the signal must find the batch in flight.
    let mut service = ServiceProcess::start_with_env(&settings, &[("SHUTDOWN_DRAIN", "0s")]);
    let in_flight = RefCell::new(None);
    wait_until("a batch is delivered and not yet acked", || async {
        let Ok(stream) = js.get_stream(&settings.nats.stream).await else {
            return false;
        };
        let Ok(mut consumer) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&settings.nats.durable)
            .await
        else {
            return false;
        };
        match consumer.info().await {
            Ok(info) if info.num_ack_pending > 0 => {
                *in_flight.borrow_mut() = Some(info.clone());
                true
            }
            _ => false,
        }
    })
    .await;
    let status = service
        .terminate(Duration::from_secs(10))
        .await
        .expect("the service exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}:\n{}", service.log());
    let log = service.log();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );

    // The batch in flight at the signal was finished: acked, and nothing
    // else is left delivered but unacked (to wait out `ack_wait`).
    let in_flight = in_flight.into_inner().unwrap();
    let info = js
        .get_stream(&settings.nats.stream)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(&settings.nats.durable)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let acked = info.ack_floor.stream_sequence;
    assert!(
        acked >= in_flight.delivered.stream_sequence,
        "in flight at the signal: {in_flight:?}; after the exit: {info:?}"
    );
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(acked, info.delivered.stream_sequence, "{info:?}");
    assert!(
        acked < backlog.len() as u64,
        "the whole backlog was stored before the signal: {info:?}"
    );
    // ... and stored, with nothing stored beyond what was acked.
    let stored = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT max(stream_seq) AS seq FROM products",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "seq")
        .unwrap();
    assert_eq!(
        stored as u64, acked,
        "acked up to {acked}, stored up to {stored}"
    );

    // Started again, it takes the rest of the backlog.
    db.execute_unprepared("DROP TRIGGER slow_batch ON products")
        .await
        .unwrap();
    service.restart();
    wait_until("the rest of the backlog is stored", || async {
        outstanding(&js, &settings).await == 0
    })
    .await;
    let last: serde_json::Value = reqwest::get(format!("{}/products/100", service.base().await))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["price"], 30);
}
