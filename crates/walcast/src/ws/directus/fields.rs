//! Directus `fields` (`id`, `author.name`, `*`, `author.*`, `*.*`) as a GraphQL selection over
//! what the caller's schema shows, and the result put back in Directus' shape.

use std::sync::Arc;

use serde_json::Value;
use walcast_graphql::TableInfo;
use walcast_model::Kind;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldsError {
    #[error("unknown field {0:?} (or not readable with this token)")]
    Unknown(String),
    #[error("field {0:?} is not a relation: it has no {1:?}")]
    NotRelation(String, String),
    #[error("empty field name in {0:?}")]
    Empty(String),
}

/// A selection of one table's fields, in the order asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    items: Vec<(String, Item)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// `numeric`: an integer primary key, which GraphQL gives as an ID string and Directus as
    /// a number.
    Column { numeric: bool },
    /// A related item (`to_one`) or list. Named without sub-fields (`bare`), the relation is
    /// its key or keys, as in Directus.
    Relation {
        to_one: bool,
        bare: bool,
        key: Option<(String, bool)>,
        sel: Selection,
    },
}

/// The column name of the table's single-column primary key as the view shows it, and whether it
/// is an integer of at most 32 bits (a JSON number in Directus).
pub fn id_field(t: &TableInfo) -> Option<(String, bool)> {
    let c = t.id_column()?;
    let numeric = t
        .table
        .columns
        .get(c.index)
        .is_some_and(|col| matches!(col.ty.kind, Kind::Int2 | Kind::Int4) && !col.ty.array);
    Some((c.name.to_string(), numeric))
}

/// The GraphQL name of a column as the client names it: its GraphQL name, or its Postgres name.
fn column<'a>(t: &'a TableInfo, name: &str) -> Option<&'a walcast_graphql::info::ColumnInfo> {
    t.column(name).or_else(|| {
        t.columns.iter().find(|c| {
            t.table
                .columns
                .get(c.index)
                .is_some_and(|col| col.name == name)
        })
    })
}

impl Selection {
    /// The selection of `fields` on `t`; none means `*`.
    pub fn parse(t: &Arc<TableInfo>, fields: &[String]) -> Result<Selection, FieldsError> {
        let mut sel = Selection::default();
        if fields.is_empty() {
            sel.insert(t, &["*"], "*")?;
        }
        for f in fields {
            let path: Vec<&str> = f.split('.').map(str::trim).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(FieldsError::Empty(f.clone()));
            }
            sel.insert(t, &path, f)?;
        }
        Ok(sel)
    }

    fn column(&mut self, name: &str, numeric: bool) {
        if !self.items.iter().any(|(n, _)| n == name) {
            self.items.push((name.to_owned(), Item::Column { numeric }));
        }
    }

    fn relation(&mut self, name: &str, to_one: bool, key: Option<(String, bool)>) -> &mut Item {
        let at = match self.items.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.items.push((
                    name.to_owned(),
                    Item::Relation {
                        to_one,
                        bare: false,
                        key,
                        sel: Selection::default(),
                    },
                ));
                self.items.len() - 1
            }
        };
        &mut self.items[at].1
    }

    fn insert(
        &mut self,
        t: &Arc<TableInfo>,
        path: &[&str],
        whole: &str,
    ) -> Result<(), FieldsError> {
        let Some((first, rest)) = path.split_first() else {
            return Ok(());
        };
        let id = id_field(t);
        if *first == "*" {
            for c in t.columns.iter().filter(|_| rest.is_empty()) {
                let numeric = id.as_ref().is_some_and(|(n, num)| *num && *n == *c.name);
                self.column(&c.name, numeric);
            }
            if !rest.is_empty() {
                // `*.*`, `*.name`: every column, and the rest on every relation.
                self.insert(t, &["*"], whole)?;
                for rel in t.relations() {
                    let Some(target) = rel.target() else { continue };
                    if rest == ["*"] || rest.iter().all(|p| column(&target, p).is_some()) {
                        let key = id_field(&target);
                        if let Item::Relation { sel, .. } =
                            self.relation(&rel.name, rel.is_to_one(), key)
                        {
                            sel.insert(&target, rest, whole)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        if let Some(c) = column(t, first) {
            if let Some(next) = rest.first() {
                return Err(FieldsError::NotRelation(
                    (*first).to_owned(),
                    (*next).to_owned(),
                ));
            }
            let numeric = id.as_ref().is_some_and(|(n, num)| *num && *n == *c.name);
            self.column(&c.name, numeric);
            return Ok(());
        }
        let Some(rel) = t.relation(first) else {
            return Err(FieldsError::Unknown(whole.to_owned()));
        };
        let Some(target) = rel.target() else {
            return Err(FieldsError::Unknown(whole.to_owned()));
        };
        let key = id_field(&target);
        let Item::Relation { bare, sel, .. } = self.relation(&rel.name, rel.is_to_one(), key)
        else {
            return Err(FieldsError::Unknown(whole.to_owned()));
        };
        if rest.is_empty() {
            *bare = true;
            Ok(())
        } else {
            sel.insert(&target, rest, whole)
        }
    }

    /// The GraphQL selection set, braces included.
    pub fn graphql(&self) -> String {
        let mut out = String::from("{");
        for (name, item) in &self.items {
            out.push(' ');
            out.push_str(name);
            if let Item::Relation { bare, key, sel, .. } = item {
                if sel.items.is_empty() {
                    // Named alone: its key (every column when it has no single-column key).
                    match (bare, key) {
                        (true, Some((k, _))) => out.push_str(&format!(" {{ {k} }}")),
                        _ => out.push_str(" { __typename }"),
                    }
                } else {
                    out.push(' ');
                    out.push_str(&sel.graphql());
                }
            }
        }
        if self.items.is_empty() {
            out.push_str(" __typename");
        }
        out.push_str(" }");
        out
    }

    /// Puts an item the selection produced into Directus' shape: integer keys as numbers, a
    /// relation named alone as its key.
    pub fn shape(&self, item: &mut Value) {
        let Value::Object(o) = item else { return };
        o.remove("__typename");
        for (name, it) in &self.items {
            let Some(v) = o.get_mut(name.as_str()) else {
                continue;
            };
            match it {
                Item::Column { numeric } => {
                    if *numeric {
                        numeric_key(v);
                    }
                }
                Item::Relation {
                    bare,
                    key,
                    sel,
                    to_one,
                } => {
                    let flatten = *bare && sel.items.is_empty();
                    let one = |v: &mut Value| {
                        if flatten {
                            if let Some((k, numeric)) = key {
                                let mut id = v.get(k.as_str()).cloned().unwrap_or(Value::Null);
                                if *numeric {
                                    numeric_key(&mut id);
                                }
                                *v = id;
                            }
                        } else {
                            sel.shape(v);
                        }
                    };
                    match (to_one, v) {
                        (true, v) if !v.is_null() => one(v),
                        (false, Value::Array(list)) => list.iter_mut().for_each(one),
                        _ => {}
                    }
                }
            }
        }
    }
}

/// `"7"` to `7`, for keys of integer columns.
pub fn numeric_key(v: &mut Value) {
    if let Some(n) = v.as_str().and_then(|s| s.parse::<i64>().ok()) {
        *v = Value::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::directus::testing::blog;
    use serde_json::json;

    fn sel(fields: &[&str]) -> Result<Selection, FieldsError> {
        let info = blog();
        let articles = info.table("articles").expect("articles").clone();
        Selection::parse(
            &articles,
            &fields.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn paths_become_a_selection() {
        assert_eq!(
            sel(&["id", "title", "author.name"]).expect("ok").graphql(),
            "{ id title author { name } }"
        );
        assert_eq!(
            sel(&[]).expect("ok").graphql(),
            "{ id title status author_id }"
        );
        assert_eq!(
            sel(&["*", "author.*"]).expect("ok").graphql(),
            "{ id title status author_id author { id name } }"
        );
        assert_eq!(
            sel(&["title", "comments.body"]).expect("ok").graphql(),
            "{ title comments { body } }"
        );
        assert_eq!(sel(&["author"]).expect("ok").graphql(), "{ author { id } }");
        assert_eq!(
            sel(&["*.*"]).expect("ok").graphql(),
            "{ id title status author_id author { id name } comments { id article_id body } }"
        );
    }

    #[test]
    fn unknown_fields_and_paths_through_columns_are_refused() {
        assert_eq!(sel(&["secret"]), Err(FieldsError::Unknown("secret".into())));
        assert_eq!(
            sel(&["title.x"]),
            Err(FieldsError::NotRelation("title".into(), "x".into()))
        );
        assert_eq!(
            sel(&["author..name"]),
            Err(FieldsError::Empty("author..name".into()))
        );
    }

    #[test]
    fn results_take_directus_shape() {
        let s = sel(&["id", "author", "comments.id", "comments.body"]).expect("ok");
        let mut item =
            json!({"id": "7", "author": {"id": "2"}, "comments": [{"id": "1", "body": "b"}]});
        s.shape(&mut item);
        assert_eq!(
            item,
            json!({"id": 7, "author": 2, "comments": [{"id": 1, "body": "b"}]})
        );
        let mut none = json!({"id": "8", "author": null, "comments": []});
        s.shape(&mut none);
        assert_eq!(none, json!({"id": 8, "author": null, "comments": []}));
    }
}
