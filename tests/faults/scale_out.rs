//! Scale-out: three instances of the binary share one database and one
//! durable consumer on a three-node NATS cluster with an R3 stream. A mixed
//! workload (updates by id, id-less products) is stored exactly once; every
//! instance serves every committed write within a second; one instance and
//! one NATS node are killed (-9) in the middle, and nothing is lost.

use crate::common::process::ServiceProcess;
use crate::common::servers::NatsCluster;
use crate::common::{Cleanup, connect, init_logs, unique_settings, wait_until, wait_until_within};
use async_nats::jetstream::{self, message::PublishMessage};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const IDS: i64 = 60;
const ROUNDS: i64 = 3;
const NEW_PER_ROUND: usize = 40;

/// Round `round`'s messages: every id at price `round`, and new products.
fn round(round: i64) -> Vec<(String, String)> {
    let mut messages: Vec<(String, String)> = (1..=IDS)
        .map(|id| {
            let body =
                json!({"id": id, "name": format!("p{id}"), "price": round, "manufacturer": "m"});
            (format!("r{round}-id{id}"), body.to_string())
        })
        .collect();
    messages.extend((0..NEW_PER_ROUND).map(|k| {
        let name = format!("new-{round}-{k}");
        let body = json!({"name": name, "price": 1, "manufacturer": "m"});
        (format!("r{round}-{name}"), body.to_string())
    }));
    messages
}

/// Publishes each message, retrying while the cluster elects new leaders;
/// its `Nats-Msg-Id` makes a retried publish that did land count once.
async fn publish_all(js: &jetstream::Context, subject: &str, messages: Vec<(String, String)>) {
    for (id, body) in messages {
        wait_until(&format!("publish {id} is acked"), || {
            let publish = PublishMessage::build()
                .message_id(id.clone())
                .payload(body.clone().into());
            async move {
                match js.send_publish(subject.to_owned(), publish).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }
}

/// What an instance serves: every product by id, through its JSON list.
async fn served(http: &reqwest::Client, base: &str) -> Option<BTreeMap<i64, serde_json::Value>> {
    let mut products = BTreeMap::new();
    let mut after = 0;
    loop {
        let url = format!("{base}/products?limit=1000&after={after}");
        let page: Vec<serde_json::Value> = http.get(url).send().await.ok()?.json().await.ok()?;
        let Some(last) = page.last() else { break };
        after = last["id"].as_i64()?;
        for product in page {
            products.insert(product["id"].as_i64()?, product);
        }
    }
    Some(products)
}

/// Whether `products` is what the first `rounds` rounds leave.
fn is_current(products: &BTreeMap<i64, serde_json::Value>, rounds: i64) -> bool {
    let by_id_current = (1..=IDS).all(|id| products.get(&id).is_some_and(|p| p["price"] == rounds));
    let new = products
        .values()
        .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("new-")))
        .count();
    by_id_current && new == NEW_PER_ROUND * rounds as usize
}

#[tokio::test]
async fn three_instances_on_a_nats_cluster_store_once_serve_everything_and_survive_kills() {
    init_logs();
    let mut cluster = NatsCluster::start(3).await;
    let mut settings = unique_settings();
    settings.nats.url = cluster.urls().into();
    let _cleanup = Cleanup::new(&settings);

    // The operator's R3 stream; the instances use it as it is.
    let (options, servers) = actors::jetstream::options(&settings.nats.url, "test");
    let js = jetstream::new(options.connect(servers).await.unwrap());
    let stream_config = jetstream::stream::Config {
        num_replicas: 3,
        ..settings.stream().config()
    };
    wait_until("the cluster creates the R3 stream", || async {
        js.create_stream(stream_config.clone()).await.is_ok()
    })
    .await;

    let mut instances: Vec<ServiceProcess> =
        (0..3).map(|_| ServiceProcess::start(&settings)).collect();
    let mut bases = Vec::new();
    for instance in &mut instances {
        bases.push(instance.base().await);
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for base in &bases {
        wait_until("the instance is ready", || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    let subject = settings.nats.subject.clone();
    publish_all(&js, &subject, round(1)).await;
    // In the middle of the second round: one instance and one NATS node die.
    let mut second = round(2);
    let rest = second.split_off(second.len() / 2);
    publish_all(&js, &subject, second).await;
    instances[2].kill_9();
    cluster.nodes[2].kill();
    publish_all(&js, &subject, rest).await;
    publish_all(&js, &subject, round(3)).await;

    // Stored exactly once: every id at its last price, each new product once.
    let db = connect(&settings.database.url).await;
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        }
    };
    wait_until_within(
        "Postgres holds all three rounds",
        Duration::from_secs(40),
        || async {
            count("SELECT count(*) AS n FROM products WHERE price = 3 AND name LIKE 'p%'").await
                == IDS
                && count("SELECT count(*) AS n FROM products WHERE name LIKE 'new-%'").await
                    == NEW_PER_ROUND as i64 * ROUNDS
        },
    )
    .await;
    assert_eq!(
        count("SELECT count(DISTINCT name) AS n FROM products WHERE name LIKE 'new-%'").await,
        NEW_PER_ROUND as i64 * ROUNDS,
        "no new product was stored twice"
    );
    assert_eq!(
        count("SELECT count(*) AS n FROM rejected_messages").await,
        0
    );

    // Committed: each survivor serves all of it within a second.
    for base in &bases[..2] {
        wait_until_within(
            &format!("{base} serves every committed write"),
            Duration::from_secs(1),
            || async {
                served(&http, base)
                    .await
                    .is_some_and(|p| is_current(&p, ROUNDS))
            },
        )
        .await;
    }
}
