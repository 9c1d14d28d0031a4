//! One row per product: the latest version applied from the stream.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "products")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub price: i64,
    pub manufacturer: String,
    pub description: Option<String>,
    /// A JSON object of string, number or boolean values.
    pub attributes: Json,
    /// The stream (name and creation time) of the last message applied to this row.
    pub stream: String,
    /// The stream sequence of the last message applied: a message only wins if it is newer.
    pub stream_seq: i64,
    /// `stream#seq` of the id-less message that created this row, so that a redelivery
    /// of that message does not create a second product. `None` for rows created by id.
    #[sea_orm(unique)]
    pub created_by: Option<String>,
    pub updated_at: DateTimeWithTimeZone,
    /// Stamped by a trigger on every insert and update, from one sequence: the
    /// later version of a row has the higher revision. (The row also holds
    /// `changed_by`, the writing transaction's id, read only by raw SQL.)
    pub revision: i64,
    /// Deleted by a deletion message: kept (with the stream sequence of that
    /// message) so that an older update redelivered later does not bring it
    /// back; reads skip it.
    pub deleted: bool,
    /// Who last changed it through the web UI's forms (the message's
    /// `Products-Operator` header); `None` for a publisher's own message.
    pub operator: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
