//! The column list and FROM item of the reads (queries, related rows, mutations' `RETURNING`):
//! every value as text, the form WAL tuples carry, so a row reads the same from either.

use walcast_model::Table;

use crate::sql::quote_ident;

/// Every column of `table` over `alias`, as text.
pub fn select_list(table: &Table, alias: &str) -> String {
    table
        .columns
        .iter()
        .map(|c| {
            let col = format!("{alias}.{}", quote_ident(&c.name));
            // `::text` strips char(n) padding; the output function (as pgoutput uses) keeps it.
            if c.ty.name == "bpchar" {
                format!("(CASE WHEN {col} IS NULL THEN NULL ELSE format('%s', {col}) END)")
            } else {
                format!("{col}::text")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"schema"."table"`.
pub fn table_name(table: &Table) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

/// `"schema"."table" AS alias`.
pub fn from_clause(table: &Table, alias: &str) -> String {
    format!("{} AS {alias}", table_name(table))
}
