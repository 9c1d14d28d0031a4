//! SeaORM entities: the rows this service keeps in Postgres.
//!
//! The schema itself is owned by the `migration` crate; these structs mirror it.

pub mod products;
pub mod rejected_messages;
