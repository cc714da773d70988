//! Statements of the item mutations: insert, update or delete one row.
//!
//! Client values only travel as text parameters, cast to the column's type in SQL; identifiers
//! and type names come from the catalog, quoted. The caller's row filter binds the statements
//! as row-level security's `USING` and `WITH CHECK` do: an update or delete reaches only a row
//! the filter selects (the filter is part of its `WHERE`), and the last output column of an
//! insert or update says whether the row it leaves still passes the filter.

use walcast_model::{Column, Table};

use crate::ast::RowFilter;
use crate::select::{select_list, table_name};
use crate::sql::{quote_ident, SqlBuilder};

/// SQL text and its parameters (`$1`, `$2`, … in order; None is NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Option<String>>,
}

/// A column and the value to write to it, in Postgres input syntax (None: NULL).
pub type Assignment<'t> = (&'t Column, Option<String>);

/// A client's JSON value in Postgres input syntax; an array column takes a list, written as an
/// array literal. None for null.
pub fn input_text(v: &serde_json::Value, array: bool) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) if array => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match input_text(i, false) {
                    None => "NULL".to_owned(),
                    Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                })
                .collect();
            Some(format!("{{{}}}", parts.join(",")))
        }
        other => Some(other.to_string()),
    }
}

/// Parameter `n`, cast to `sql_type`.
fn cast(n: usize, sql_type: &str) -> String {
    format!("CAST(${n}::text AS {sql_type})")
}

/// The caller's row filter over alias `t` and its parameters (numbered from `$1`: the
/// statement's own come after). `TRUE` without a filter.
fn row_condition(table: &Table, filter: Option<&RowFilter>) -> (String, Vec<Option<String>>) {
    match filter {
        None => ("TRUE".to_owned(), Vec::new()),
        Some(filter) => {
            let mut b = SqlBuilder::new(table, "t");
            let cond = b.filter(filter);
            (cond, b.params)
        }
    }
}

/// `INSERT` of one row, returning it (defaults and triggers applied) and whether it passes
/// `filter`.
pub fn insert(table: &Table, values: Vec<Assignment<'_>>, filter: Option<&RowFilter>) -> Statement {
    let (check, mut params) = row_condition(table, filter);
    let names: Vec<String> = values.iter().map(|(c, _)| quote_ident(&c.name)).collect();
    let casts: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (c, _))| cast(params.len() + i + 1, &c.sql_type))
        .collect();
    params.extend(values.into_iter().map(|(_, v)| v));
    let body = if names.is_empty() {
        "DEFAULT VALUES".to_owned()
    } else {
        format!("({}) VALUES ({})", names.join(", "), casts.join(", "))
    };
    // In RETURNING, `t` is the row as inserted.
    let sql = format!(
        "INSERT INTO {} AS t {body} RETURNING {}, COALESCE(({check}), FALSE)",
        table_name(table),
        select_list(table, "t")
    );
    Statement { sql, params }
}

/// `UPDATE` of the row whose `key` is `id`, if `filter` selects it, returning the row after the
/// update and whether it still passes `filter`. None when `values` is empty.
pub fn update(
    table: &Table,
    key: &Column,
    id: String,
    values: Vec<Assignment<'_>>,
    filter: Option<&RowFilter>,
) -> Option<Statement> {
    if values.is_empty() {
        return None;
    }
    // The filter's SQL (over `t`) is used twice with the same parameters: in WHERE, `t` is the
    // row before the update (USING); in RETURNING, the row after it (WITH CHECK).
    let (cond, mut params) = row_condition(table, filter);
    let sets: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, (c, _))| {
            let value = cast(params.len() + i + 1, &c.sql_type);
            format!("{} = {value}", quote_ident(&c.name))
        })
        .collect();
    params.extend(values.into_iter().map(|(_, v)| v));
    params.push(Some(id));
    let sql = format!(
        "UPDATE {} AS t SET {} WHERE t.{} = {} AND ({cond}) RETURNING {}, COALESCE(({cond}), FALSE)",
        table_name(table),
        sets.join(", "),
        quote_ident(&key.name),
        cast(params.len(), &key.sql_type),
        select_list(table, "t")
    );
    Some(Statement { sql, params })
}

/// `DELETE` of the row whose `key` is `id`, if `filter` selects it, returning its key as text.
pub fn delete(table: &Table, key: &Column, id: String, filter: Option<&RowFilter>) -> Statement {
    let (cond, mut params) = row_condition(table, filter);
    params.push(Some(id));
    let sql = format!(
        "DELETE FROM {} AS t WHERE t.{pk} = {} AND ({cond}) RETURNING t.{pk}::text",
        table_name(table),
        cast(params.len(), &key.sql_type),
        pk = quote_ident(&key.name),
    );
    Statement { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use walcast_model::{Kind, PgType, ReplicaIdentity};

    fn column(name: &str, kind: Kind, type_name: &str, sql_type: &str, array: bool) -> Column {
        Column {
            name: name.into(),
            gql_name: name.into(),
            attnum: 0,
            ty: PgType {
                oid: 0,
                name: type_name.into(),
                kind,
                array,
                enum_values: vec![],
            },
            sql_type: sql_type.into(),
            not_null: false,
        }
    }

    /// `app."Posts"` (id, author_id, "ti""tle", tags text[]): names that need quoting.
    fn posts() -> Table {
        Table {
            oid: 1,
            schema: "app".into(),
            name: "Posts".into(),
            gql_name: "Posts".into(),
            columns: vec![
                column("id", Kind::Int4, "int4", "integer", false),
                column("author_id", Kind::Int4, "int4", "integer", false),
                column("ti\"tle", Kind::Text, "text", "text", false),
                column("tags", Kind::Text, "_text", "text[]", true),
            ],
            primary_key: vec![0],
            replica_identity: ReplicaIdentity::Default,
            foreign_keys: vec![],
        }
    }

    const RETURNING: &str =
        "t.\"id\"::text, t.\"author_id\"::text, t.\"ti\"\"tle\"::text, t.\"tags\"::text";

    fn own_rows(table: &Table) -> RowFilter {
        crate::parse_where(table, &json!({ "author_id": 7 })).expect("filter")
    }

    fn condition(table: &Table, f: &RowFilter) -> String {
        SqlBuilder::new(table, "t").filter(f)
    }

    #[test]
    fn insert_binds_every_value_after_the_filter_parameters() {
        let t = posts();
        let f = own_rows(&t);
        let hostile = "x'); DROP TABLE users; --".to_owned();
        let s = insert(
            &t,
            vec![
                (&t.columns[1], Some("7".into())),
                (&t.columns[2], Some(hostile.clone())),
            ],
            Some(&f),
        );
        let cond = condition(&t, &f);
        assert_eq!(
            s.sql,
            format!(
                "INSERT INTO \"app\".\"Posts\" AS t (\"author_id\", \"ti\"\"tle\") VALUES \
                 (CAST($2::text AS integer), CAST($3::text AS text)) RETURNING {RETURNING}, \
                 COALESCE(({cond}), FALSE)"
            )
        );
        assert_eq!(
            s.params,
            vec![Some("7".into()), Some("7".into()), Some(hostile)]
        );
    }

    #[test]
    fn insert_without_values_or_filter_uses_defaults_and_passes() {
        let t = posts();
        let s = insert(&t, vec![], None);
        assert_eq!(
            s.sql,
            format!(
                "INSERT INTO \"app\".\"Posts\" AS t DEFAULT VALUES RETURNING {RETURNING}, \
                 COALESCE((TRUE), FALSE)"
            )
        );
        assert!(s.params.is_empty());
    }

    #[test]
    fn update_checks_the_filter_before_and_after_and_binds_the_id_last() {
        let t = posts();
        let f = own_rows(&t);
        let s = update(
            &t,
            &t.columns[0],
            "3".into(),
            vec![(&t.columns[2], Some("new".into())), (&t.columns[3], None)],
            Some(&f),
        )
        .expect("statement");
        let cond = condition(&t, &f);
        assert_eq!(
            s.sql,
            format!(
                "UPDATE \"app\".\"Posts\" AS t SET \"ti\"\"tle\" = CAST($2::text AS text), \
                 \"tags\" = CAST($3::text AS text[]) WHERE t.\"id\" = CAST($4::text AS integer) \
                 AND ({cond}) RETURNING {RETURNING}, COALESCE(({cond}), FALSE)"
            )
        );
        assert_eq!(
            s.params,
            vec![Some("7".into()), Some("new".into()), None, Some("3".into())]
        );
    }

    #[test]
    fn update_with_nothing_to_set_is_no_statement() {
        let t = posts();
        assert_eq!(update(&t, &t.columns[0], "3".into(), vec![], None), None);
    }

    #[test]
    fn delete_reaches_only_filtered_rows_and_returns_the_key() {
        let t = posts();
        let s = delete(&t, &t.columns[0], "3".into(), None);
        assert_eq!(
            s.sql,
            "DELETE FROM \"app\".\"Posts\" AS t WHERE t.\"id\" = CAST($1::text AS integer) \
             AND (TRUE) RETURNING t.\"id\"::text"
        );
        assert_eq!(s.params, vec![Some("3".into())]);
        let f = own_rows(&t);
        let s = delete(&t, &t.columns[0], "3".into(), Some(&f));
        assert!(s.sql.contains(&format!("AND ({})", condition(&t, &f))));
        assert_eq!(s.params, vec![Some("7".into()), Some("3".into())]);
    }

    #[test]
    fn input_text_is_postgres_input_syntax() {
        assert_eq!(input_text(&json!(null), false), None);
        assert_eq!(input_text(&json!("a'b"), false).as_deref(), Some("a'b"));
        assert_eq!(input_text(&json!(12), false).as_deref(), Some("12"));
        assert_eq!(input_text(&json!(true), false).as_deref(), Some("true"));
        assert_eq!(
            input_text(&json!({"k": [1]}), false).as_deref(),
            Some("{\"k\":[1]}")
        );
        assert_eq!(
            input_text(&json!(["a\"b", null, "c\\d", 4]), true).as_deref(),
            Some("{\"a\\\"b\",NULL,\"c\\\\d\",\"4\"}")
        );
        // A list for a column that is not an array stays JSON text (a json column).
        assert_eq!(input_text(&json!([1, 2]), false).as_deref(), Some("[1,2]"));
    }
}
