//! The benchmark's own code (`benches/throughput/bench.rs`) on a few hundred
//! messages, so that it cannot rot: it must run to its end and its checks must
//! hold (every product stored, by one replica and by three, every updated id at
//! its last version, every sampled update served over HTTP by both replicas).
//! No figure is asserted: speed is measured by `cargo bench --bench
//! throughput`, never in tests.

#[path = "../../benches/throughput/bench.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_to_its_end_on_a_few_hundred_messages() {
    crate::common::init_logs();
    let plan = bench::Plan {
        messages: 300,
        ids: 50,
        versions: 4,
        freshness_seconds: 1,
        pg_socket: None,
        batch_size: None,
    };
    let report = bench::run(&plan).await.expect("the benchmark ran");
    for freshness in &report.freshness {
        assert!(!freshness.samples.is_empty());
    }
    let table = report.table("smoke");
    for row in [
        "psql",
        "a bare table",
        "`products`' indexes",
        "bare pull + ack",
        "replicas on one durable",
        "many updates",
        "each replica polled every ms",
        "min_seq=<the ack's sequence>",
        "one sample at a time",
    ] {
        assert!(
            table.contains(row),
            "the table has a row for {row}:\n{table}"
        );
    }
}
