//! Throughput and freshness, each figure beside a baseline measured in the
//! same run (the code: `throughput/bench.rs`; what it measures is told there).
//!
//! Run: `cargo bench --bench throughput` (needs the Postgres and NATS of
//! `scripts/services`). Sizes: `BENCH_MESSAGES` (the all-new backlog, default
//! 100000), `BENCH_IDS` and `BENCH_VERSIONS` (the backlog of updates, default
//! 10000 ids × 10 versions), `BENCH_FRESHNESS_SECONDS` (default 10);
//! `BENCH_PG_SOCKET=/var/run/postgresql` reaches Postgres over its Unix socket
//! instead of TCP; `BENCH_BATCH_SIZE` sets `INGEST_BATCH_SIZE` (the service's
//! and the bare loops' batches; default 500). A test runs the same code with a few hundred messages
//! (`tests/e2e/bench_smoke.rs`), so that it cannot rot.

#[path = "throughput/bench.rs"]
mod bench;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let plan = bench::Plan {
        messages: env_or("BENCH_MESSAGES", 100_000),
        ids: env_or("BENCH_IDS", 10_000),
        versions: env_or("BENCH_VERSIONS", 10),
        freshness_seconds: env_or("BENCH_FRESHNESS_SECONDS", 10),
        pg_socket: std::env::var("BENCH_PG_SOCKET").ok(),
        batch_size: std::env::var("BENCH_BATCH_SIZE")
            .ok()
            .and_then(|size| size.parse().ok()),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let report = bench::run(&plan).await?;
    println!(
        "{}",
        report.table(&format!("cargo bench --bench throughput ({command})"))
    );
    Ok(())
}
