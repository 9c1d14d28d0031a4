//! Messages that could not be decoded into a product, kept with the reason.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rejected_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    /// The payload, cut to the first few KiB.
    pub payload: Vec<u8>,
    /// The size of the whole payload in bytes.
    pub payload_len: i64,
    /// Why the message was rejected, for a person to read.
    pub reason: String,
    pub rejected_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
