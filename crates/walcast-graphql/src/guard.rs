//! What a parsed filter may reach, given the caller's view: related rows only through the
//! caller's row filter on the related table, and updated-field names only of visible columns.

use walcast_filter::{EventFilter, Quantifier, RowFilter};

use crate::context::Ctx;
use crate::error::Error;
use crate::info::TableInfo;

/// Adds the caller's row filter of each related table inside every relation condition, so a
/// condition cannot observe rows the caller may not read.
pub fn confine(f: RowFilter, ctx: &Ctx) -> RowFilter {
    match f {
        RowFilter::All(v) => RowFilter::All(v.into_iter().map(|f| confine(f, ctx)).collect()),
        RowFilter::Any(v) => RowFilter::Any(v.into_iter().map(|f| confine(f, ctx)).collect()),
        RowFilter::None(v) => RowFilter::None(v.into_iter().map(|f| confine(f, ctx)).collect()),
        RowFilter::Relation {
            relation,
            kind,
            filter,
        } => {
            let inner = confine(*filter, ctx);
            let filter = match ctx.row_filter(relation.target.oid) {
                // `_every` ranges over the rows the caller sees: hidden ones cannot fail it.
                Some(role) if kind == Quantifier::Every => {
                    RowFilter::Any(vec![RowFilter::None(vec![role]), inner])
                }
                Some(role) => RowFilter::All(vec![role, inner]),
                None => inner,
            };
            RowFilter::Relation {
                relation,
                kind,
                filter: Box::new(filter),
            }
        }
        other => other,
    }
}

/// [`confine`] for the row conditions of an event filter; also refuses `updatedFields`
/// conditions naming columns the caller cannot see.
pub fn confine_event(f: EventFilter, ctx: &Ctx, t: &TableInfo) -> Result<EventFilter, Error> {
    let all = |v: Vec<EventFilter>| -> Result<Vec<EventFilter>, Error> {
        v.into_iter().map(|f| confine_event(f, ctx, t)).collect()
    };
    Ok(match f {
        EventFilter::All(v) => EventFilter::All(all(v)?),
        EventFilter::Any(v) => EventFilter::Any(all(v)?),
        EventFilter::None(v) => EventFilter::None(all(v)?),
        EventFilter::Node(rf) => EventFilter::Node(confine(rf, ctx)),
        EventFilter::UpdatedFields { columns, mode } => {
            if let Some(hidden) = columns
                .iter()
                .find(|c| !t.columns.iter().any(|v| v.index == **c))
            {
                let name = t
                    .table
                    .columns
                    .get(*hidden)
                    .map(|c| c.gql_name.as_str())
                    .unwrap_or("?");
                return Err(Error::UnknownField {
                    field: name.to_owned(),
                    on: t.name.to_string(),
                }
                .at("updatedFields"));
            }
            EventFilter::UpdatedFields { columns, mode }
        }
        other => other,
    })
}
