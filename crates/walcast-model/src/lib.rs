//! The model stage: the catalog, typed values, and change events built from pgoutput messages.

pub mod catalog;
pub mod changes;
pub mod datum;
pub mod event;
pub mod naming;
pub mod sync;
pub mod value;

pub use catalog::{
    Catalog, CatalogError, Column, ForeignKey, Published, ReplicaIdentity, Table, TableSelection,
};
pub use changes::{ChangeDecoder, ChangeError, Step, DEFAULT_PART_SIZE};
pub use datum::{Datum, Kind, PgType};
pub use event::{
    Batch, Cursor, Event, LogicalMessage, Op, ResumePoint, Row, Snapshot, Transaction,
};
