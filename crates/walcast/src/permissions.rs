//! Per-role table, column and row permissions (`WALCAST_PERMISSIONS_FILE`, see
//! `walcast-access`).

pub use walcast_access::{Access, Permissions, PermissionsError, TableGrant, Writes, ADMIN_ROLE};
