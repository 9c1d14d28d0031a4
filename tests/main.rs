//! Integration tests, all in one binary (one link): `component/` (one part
//! at a time), `e2e/` (the whole service) and `faults/` (under faults, on
//! servers of their own); one module per behaviour.
//! Each test runs against the real Postgres (127.0.0.1:5432) and NATS with
//! JetStream (127.0.0.1:4222), in its own database and stream.

mod common;

mod component;
mod e2e;
mod faults;
