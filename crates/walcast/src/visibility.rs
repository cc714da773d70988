//! What a subscriber's role sees of an event. An update is judged on both versions of the row,
//! as publication row filters are: a row that enters the role's rows is a create for that role,
//! one that leaves them a delete, and one that stays outside them nothing. An update that
//! changed none of the columns the role reads is nothing either (its timing would tell when a
//! hidden column changes), and so is one that changed no column at all.
//!
//! The previous version is known only as far as the replica identity carries it: without
//! `REPLICA IDENTITY FULL` an update's old row holds the key columns only. A filter that reads
//! other columns is then unknown on it, and is taken to have selected the row when the new
//! version is selected (an update, as before) but not when the new version is not (nothing, not a
//! delete: that would reveal the key of a row the role may never have seen). Likewise which
//! columns changed is unknown without `FULL`, and such an update is always sent.

use std::sync::Arc;

use walcast_access::TableGrant;
use walcast_filter::{RowFilter, Truth};
use walcast_model::changes::key_text;
use walcast_model::{Event, Op, Row, Table};

/// How one role sees an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// As it is.
    AsIs,
    /// An update that brought the row into the role's rows: a create of the new version.
    Created,
    /// An update that took the row out of them: a delete of the previous version.
    Deleted,
    /// Not at all.
    Nothing,
}

fn truth_on(filter: &RowFilter, table: &Table, row: Option<&Row>) -> Truth {
    match row {
        Some(row) => filter.evaluate_with(Some(table), row, &mut |_| Truth::Unknown),
        None => Truth::False,
    }
}

/// Whether the update changed a column the role may read (true when which columns changed is
/// unknown).
fn changes_visible(ev: &Event, visible: Option<&[String]>) -> bool {
    let Some(updated) = &ev.updated else {
        return true;
    };
    let Some(visible) = visible else {
        return !updated.is_empty();
    };
    updated.iter().any(|&i| {
        ev.table
            .columns
            .get(i)
            .is_some_and(|c| visible.binary_search(&c.name).is_ok())
    })
}

/// How a role with `access` to the event's table sees it.
pub fn judge(ev: &Event, access: &TableGrant) -> Seen {
    let filter = access.row_filter();
    match ev.op {
        Op::Update => {
            let (new, old) = match filter {
                None => (true, Truth::True),
                Some(f) => (
                    truth_on(f, &ev.table, ev.new.as_ref()).is_true(),
                    truth_on(f, &ev.table, ev.old.as_ref()),
                ),
            };
            match (new, old) {
                (true, Truth::False) => Seen::Created,
                (true, _) if changes_visible(ev, access.visible()) => Seen::AsIs,
                (true, _) => Seen::Nothing,
                (false, Truth::True) => Seen::Deleted,
                (false, _) => Seen::Nothing,
            }
        }
        // Creates are judged on the new row, deletes on the previous one; a truncate has no
        // row, so only a role without a row filter sees it.
        Op::Create | Op::Delete | Op::Truncate => {
            let ok = filter.is_none_or(|f| truth_on(f, &ev.table, ev.filter_row()).is_true());
            if ok {
                Seen::AsIs
            } else {
                Seen::Nothing
            }
        }
    }
}

/// An update as the create of its new version.
pub fn as_created(ev: &Event) -> Event {
    Event {
        table: ev.table.clone(),
        op: Op::Create,
        key: ev.key.clone(),
        new: ev.new.clone(),
        old: None,
        updated: None,
        cursor: ev.cursor,
        xid: ev.xid,
        commit_time: ev.commit_time,
        batch: ev.batch.clone(),
    }
}

/// An update as the delete of its previous version, under the previous key (an update can
/// change the key).
pub fn as_deleted(ev: &Event) -> Event {
    let key = match &ev.old {
        Some(old) if !ev.table.primary_key.is_empty() => key_text(&ev.table, old),
        _ => ev.key.clone(),
    };
    Event {
        table: ev.table.clone(),
        op: Op::Delete,
        key,
        new: None,
        old: ev.old.clone(),
        updated: None,
        cursor: ev.cursor,
        xid: ev.xid,
        commit_time: ev.commit_time,
        batch: ev.batch.clone(),
    }
}

/// The event as seen, or None.
pub fn view(ev: &Arc<Event>, seen: Seen) -> Option<Arc<Event>> {
    match seen {
        Seen::AsIs => Some(ev.clone()),
        Seen::Created => Some(Arc::new(as_created(ev))),
        Seen::Deleted => Some(Arc::new(as_deleted(ev))),
        Seen::Nothing => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use walcast_model::{Batch, Column, Cursor, Datum, Kind, PgType, ReplicaIdentity};

    fn table() -> Arc<Table> {
        let column = |i: i16, name: &str, kind: Kind, ty: &str| Column {
            name: name.into(),
            gql_name: name.into(),
            attnum: i,
            ty: PgType {
                oid: 0,
                name: ty.into(),
                kind,
                array: false,
                enum_values: vec![],
            },
            sql_type: ty.into(),
            not_null: false,
        };
        Arc::new(Table {
            oid: 1,
            schema: "public".into(),
            name: "notes".into(),
            gql_name: "notes".into(),
            columns: vec![
                column(1, "id", Kind::Int4, "int4"),
                column(2, "owner", Kind::Text, "text"),
                column(3, "secret", Kind::Text, "text"),
            ],
            primary_key: vec![0],
            replica_identity: ReplicaIdentity::Full,
            foreign_keys: vec![],
        })
    }

    fn row(id: i64, owner: &str, secret: &str) -> Row {
        vec![
            Datum::Int(id),
            Datum::Text(owner.into()),
            Datum::Text(secret.into()),
        ]
    }

    fn update(old: Row, new: Row, updated: Option<Vec<usize>>) -> Event {
        let table = table();
        Event {
            key: key_text(&table, &new),
            table,
            op: Op::Update,
            new: Some(new),
            old: Some(old),
            updated,
            cursor: Cursor::default(),
            xid: 1,
            commit_time: 0,
            batch: Arc::new(Batch::default()),
        }
    }

    /// Role `owner = "alice"`, with the `columns` (None: all).
    fn owner_alice(columns: Option<Vec<usize>>) -> TableGrant {
        TableGrant::new(table(), columns, walcast_access::Writes::NONE)
            .with_filter(json!({"owner": "alice"}))
            .expect("valid filter")
    }

    /// Role `owner = "alice"`, without the `secret` column.
    fn alice() -> TableGrant {
        owner_alice(Some(vec![0, 1]))
    }

    #[test]
    fn updates_are_judged_on_both_versions() {
        let a = alice();
        let moved_in = update(row(1, "bob", "s"), row(1, "alice", "s"), Some(vec![1]));
        assert_eq!(judge(&moved_in, &a), Seen::Created);
        let moved_out = update(row(1, "alice", "s"), row(1, "bob", "s"), Some(vec![1]));
        assert_eq!(judge(&moved_out, &a), Seen::Deleted);
        let stayed = update(row(1, "alice", "s"), row(1, "alice", "t"), Some(vec![1, 2]));
        assert_eq!(judge(&stayed, &a), Seen::AsIs);
        let elsewhere = update(row(1, "bob", "s"), row(1, "carol", "s"), Some(vec![1]));
        assert_eq!(judge(&elsewhere, &a), Seen::Nothing);
        // Only a hidden column changed: nothing, or its timing shows.
        let hidden = update(row(1, "alice", "s"), row(1, "alice", "t"), Some(vec![2]));
        assert_eq!(judge(&hidden, &a), Seen::Nothing);
        // A role that reads every column sees it.
        let everything = owner_alice(None);
        assert_eq!(judge(&hidden, &everything), Seen::AsIs);
        // An update that changed nothing is nothing to anyone.
        let idle = update(row(1, "alice", "s"), row(1, "alice", "s"), Some(vec![]));
        assert_eq!(judge(&idle, &a), Seen::Nothing);
        assert_eq!(judge(&idle, &everything), Seen::Nothing);
    }

    #[test]
    fn an_unknown_previous_version_never_reveals_a_row() {
        let a = alice();
        // Without REPLICA IDENTITY FULL: the previous row has its key only, and which columns
        // changed is unknown.
        let key_only = vec![Datum::Int(1), Datum::Unavailable, Datum::Unavailable];
        let into = update(key_only.clone(), row(1, "alice", "s"), None);
        assert_eq!(judge(&into, &a), Seen::AsIs);
        let out = update(key_only, row(1, "bob", "s"), None);
        assert_eq!(judge(&out, &a), Seen::Nothing);
    }

    #[test]
    fn views_carry_the_version_they_describe() {
        let ev = Arc::new(update(
            row(1, "alice", "s"),
            row(2, "bob", "s"),
            Some(vec![0, 1]),
        ));
        let created = view(&ev, Seen::Created).expect("a view");
        assert_eq!(
            (created.op, created.key.as_str(), created.old.is_none()),
            (Op::Create, "2", true)
        );
        let deleted = view(&ev, Seen::Deleted).expect("a view");
        assert_eq!(
            (deleted.op, deleted.key.as_str(), deleted.new.is_none()),
            (Op::Delete, "1", true)
        );
        assert_eq!(deleted.filter_row(), Some(&row(1, "alice", "s")));
        assert!(view(&ev, Seen::Nothing).is_none());
        assert!(Arc::ptr_eq(&view(&ev, Seen::AsIs).expect("as is"), &ev));
    }
}
