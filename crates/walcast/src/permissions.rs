//! Per-role permissions.
