//! The fault tests' own servers (`common/servers.rs`) are what they seem: a
//! test's nats-server never takes another server on its port for itself, and
//! one that cannot start says why.

use crate::common::servers::NatsServer;
use crate::common::wait_until;
use std::process::{Child, Command, Stdio};

/// Kills a process when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_test_nats_server_whose_port_was_taken_fails_with_its_log_instead_of_using_the_other() {
    let mut ours = NatsServer::new();
    ours.start().await;
    let url = ours.url();
    ours.kill();

    // Another server takes the port while ours is down.
    let port = url.rsplit(':').next().unwrap().to_owned();
    let _other = Killed(
        Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port,
                "--server_name",
                "someone-else",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the other server answers", || async {
        async_nats::connect(url.as_str()).await.is_ok()
    })
    .await;

    let restart = tokio::spawn(async move { ours.start().await }).await;
    let panic = restart.expect_err("ours cannot be running: the port is taken");
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("nats-server exited") && message.contains("address already in use"),
        "{message}"
    );
}
