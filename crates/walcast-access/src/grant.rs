//! What one role may read and write of one table, and which logical messages it may read.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use walcast_filter::{parse_where, FilterError, RowFilter};
use walcast_model::Table;

/// The item mutations a role may run on a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writes {
    pub insert: bool,
    pub update: bool,
    pub delete: bool,
}

impl Writes {
    pub const ALL: Writes = Writes {
        insert: true,
        update: true,
        delete: true,
    };
    pub const NONE: Writes = Writes {
        insert: false,
        update: false,
        delete: false,
    };

    pub fn any(self) -> bool {
        self.insert || self.update || self.delete
    }
}

/// What one caller may do with one table: which columns it reads, which rows (its row filter,
/// `$claims` substituted), which mutations it runs. The schema of a view is built from its
/// grants, and every event and mutation is checked against them.
#[derive(Debug, Clone)]
pub struct TableGrant {
    table: Arc<Table>,
    /// Visible column indexes, ascending; `None` means every column.
    columns: Option<Vec<usize>>,
    /// The SQL names of the visible columns, sorted; `None` means every column.
    visible: Option<Vec<String>>,
    /// Identifies the visible columns: a subscription made under another set is revoked.
    columns_key: Arc<str>,
    /// The `<table>WhereInput` rows must match, and the same parsed; `None` means every row.
    filter: Option<(Value, RowFilter)>,
    pub writes: Writes,
}

impl TableGrant {
    /// Every column, every row, every mutation.
    pub fn full(table: &Arc<Table>) -> TableGrant {
        TableGrant::new(Arc::clone(table), None, Writes::ALL)
    }

    /// The columns at `columns` (indexes into the table's; `None`: all) of every row.
    /// Indexes beyond the table are left out.
    pub fn new(table: Arc<Table>, columns: Option<Vec<usize>>, writes: Writes) -> TableGrant {
        let columns = columns
            .map(|mut cols| {
                cols.retain(|&i| i < table.columns.len());
                cols.sort_unstable();
                cols.dedup();
                cols
            })
            .filter(|cols| cols.len() < table.columns.len());
        let names = |cols: &[usize]| -> Vec<String> {
            cols.iter()
                .filter_map(|&i| table.columns.get(i).map(|c| c.name.clone()))
                .collect()
        };
        let columns_key: Arc<str> = match &columns {
            None => "*".into(),
            Some(cols) => names(cols).join(",").into(),
        };
        let visible = columns.as_deref().map(|cols| {
            let mut names = names(cols);
            names.sort_unstable();
            names
        });
        TableGrant {
            table,
            columns,
            visible,
            columns_key,
            filter: None,
            writes,
        }
    }

    /// Only the rows that match `filter` (a `<table>WhereInput`). A claim that is a number or
    /// boolean is retried as a string, since a token's `sub` may be `42` where the column is
    /// text (strings are accepted for every type).
    pub fn with_filter(self, filter: Value) -> Result<TableGrant, FilterError> {
        let parsed = match parse_where(&self.table, &filter) {
            Ok(parsed) => (filter, parsed),
            Err(first) => {
                let text = stringify_scalars(&filter);
                if text == filter {
                    return Err(first);
                }
                let parsed = parse_where(&self.table, &text).map_err(|_| first)?;
                (text, parsed)
            }
        };
        Ok(TableGrant {
            filter: Some(parsed),
            ..self
        })
    }

    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Visible column indexes, ascending; `None` means every column.
    pub fn columns(&self) -> Option<&[usize]> {
        self.columns.as_deref()
    }

    /// Whether the column at this index is visible.
    pub fn sees_column(&self, index: usize) -> bool {
        match &self.columns {
            None => index < self.table.columns.len(),
            Some(cols) => cols.binary_search(&index).is_ok(),
        }
    }

    /// The SQL names of the visible columns, sorted; `None` means every column.
    pub fn visible(&self) -> Option<&[String]> {
        self.visible.as_deref()
    }

    /// Identifies the visible columns: equal for grants that show the same ones. Shared by
    /// the clones of a grant, so a check against a kept copy is mostly a pointer comparison.
    pub fn columns_key(&self) -> &Arc<str> {
        &self.columns_key
    }

    /// Whether this grant shows the columns `key` (from [`TableGrant::columns_key`]) stands for.
    pub fn shows_columns(&self, key: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.columns_key, key) || self.columns_key == *key
    }

    /// The row filter as written, claims substituted; `None` means every row.
    pub fn filter(&self) -> Option<&Value> {
        self.filter.as_ref().map(|(v, _)| v)
    }

    /// The rows the caller may see (for deletes: judged on the previous values; updates on
    /// both); `None` means every row.
    pub fn row_filter(&self) -> Option<&RowFilter> {
        self.filter.as_ref().map(|(_, f)| f)
    }
}

fn stringify_scalars(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(stringify_scalars).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), stringify_scalars(v)))
                .collect(),
        ),
        Value::Null | Value::String(_) => v.clone(),
    }
}

/// The logical message prefixes (`pg_logical_emit_message`) a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessagePrefixes {
    /// Every prefix (role `admin`, or `"*"` in the permissions file).
    All,
    /// Exactly these prefixes.
    Only(BTreeSet<String>),
}

impl MessagePrefixes {
    pub fn allows(&self, prefix: &str) -> bool {
        match self {
            MessagePrefixes::All => true,
            MessagePrefixes::Only(set) => set.contains(prefix),
        }
    }
}
