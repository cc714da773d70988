//! Relation names, derived from the catalog's foreign keys (API.md section 2, "Relation names").
//!
//! - Many-to-one, one per foreign key of the table: a single-column key `x_id` / `xId` gives
//!   `x`; a single column without that suffix (Directus' convention, `author`) is itself the
//!   relation, so the name equals the column's and [`Relation::column_field`] says so; a
//!   composite key is named after the referenced table.
//! - One-to-many, one per foreign key of any table referencing this one (itself included):
//!   named after the referencing table, or `<table>_by_<columns>` when that table references
//!   this one through several foreign keys.
//! - A name taken by a column, or by an earlier relation, gets `_rel` appended (repeatedly).
//!
//! Foreign keys to or from tables outside the catalog give no relation.

use std::collections::HashSet;

use walcast_model::{Catalog, ForeignKey, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// This table holds the foreign key; at most one related row.
    ManyToOne,
    /// The target table holds a foreign key to this one; any number of related rows.
    OneToMany,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    /// The GraphQL field name on this table (and the filter key, with `_some`/`_every`/`_none`
    /// appended for one-to-many).
    pub name: String,
    pub kind: RelationKind,
    /// The related table.
    pub target_oid: u32,
    /// Column indexes in this table, pairwise equal to `remote_columns` for related rows.
    pub local_columns: Vec<usize>,
    /// Column indexes in the target table.
    pub remote_columns: Vec<usize>,
    /// The foreign key constraint's name.
    pub constraint: String,
    /// For a many-to-one through a foreign-key column named without an `_id` suffix: that
    /// column, whose field is the relation itself (its raw value the related row's key).
    pub column_field: Option<usize>,
}

/// The target table's column indexes for a foreign key's referenced attnums.
fn referenced_columns(fk: &ForeignKey, target: &Table) -> Option<Vec<usize>> {
    fk.target_attnums
        .iter()
        .map(|n| target.columns.iter().position(|c| c.attnum == *n))
        .collect()
}

/// `author_id` → `author`, `authorId` → `author`; `None` without such a suffix.
fn strip_id_suffix(name: &str) -> Option<&str> {
    if let Some(base) = name.strip_suffix("_id") {
        return (!base.is_empty()).then_some(base);
    }
    let base = name.strip_suffix("Id")?;
    // camelCase only: `xId`, not `ID` or `Id` alone.
    base.chars()
        .last()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .then_some(base)
}

/// Every relation of `table`: many-to-one ones first (by constraint name), then one-to-many
/// (in catalog order of the referencing tables, then by constraint name).
pub fn relations(catalog: &Catalog, table: &Table) -> Vec<Relation> {
    let columns: HashSet<&str> = table.columns.iter().map(|c| c.gql_name.as_str()).collect();
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let claim = |wanted: String, is_column: bool, taken: &mut HashSet<String>| {
        let mut name = wanted;
        while (!is_column && columns.contains(name.as_str())) || taken.contains(&name) {
            name.push_str("_rel");
        }
        taken.insert(name.clone());
        name
    };

    for fk in &table.foreign_keys {
        let Some(target) = catalog.table_by_oid(fk.target_oid) else {
            continue;
        };
        let Some(remote_columns) = referenced_columns(fk, target) else {
            continue;
        };
        let single = match fk.columns.as_slice() {
            [c] => table.columns.get(*c).map(|col| (*c, col)),
            _ => None,
        };
        let (wanted, column_field) = match single {
            Some((i, col)) => match strip_id_suffix(&col.gql_name) {
                Some(base) => (base.to_owned(), None),
                None => (col.gql_name.clone(), Some(i)),
            },
            None => (target.gql_name.clone(), None),
        };
        let name = claim(wanted, column_field.is_some(), &mut taken);
        out.push(Relation {
            // A clash moved the name off the column: it is then an ordinary relation field.
            column_field: column_field
                .filter(|i| table.columns.get(*i).is_some_and(|c| c.gql_name == name)),
            name,
            kind: RelationKind::ManyToOne,
            target_oid: target.oid,
            local_columns: fk.columns.clone(),
            remote_columns,
            constraint: fk.name.clone(),
        });
    }

    for source in &catalog.tables {
        let refs: Vec<&ForeignKey> = source
            .foreign_keys
            .iter()
            .filter(|fk| fk.target_oid == table.oid)
            .collect();
        for fk in &refs {
            let Some(local_columns) = referenced_columns(fk, table) else {
                continue;
            };
            let wanted = if refs.len() == 1 {
                source.gql_name.clone()
            } else {
                let cols: Vec<&str> = fk
                    .columns
                    .iter()
                    .filter_map(|&i| source.columns.get(i).map(|c| c.gql_name.as_str()))
                    .collect();
                format!("{}_by_{}", source.gql_name, cols.join("_"))
            };
            out.push(Relation {
                name: claim(wanted, false, &mut taken),
                kind: RelationKind::OneToMany,
                target_oid: source.oid,
                local_columns,
                remote_columns: fk.columns.clone(),
                constraint: fk.name.clone(),
                column_field: None,
            });
        }
    }
    out
}
