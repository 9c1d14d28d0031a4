//! The service under faults, on servers the tests start and kill themselves
//! (never the machine's shared ones): kill -9, NATS or Postgres going away,
//! a slow store, a recreated stream, a NATS cluster losing nodes, and the
//! test servers themselves.

mod kill;
mod nats;
mod postgres;
mod scale_out;
mod slow_store;
mod stream_recreated;
mod test_servers;
