//! Input object types: `<table>WhereInput` and `<table>SubscriptionWhereInput`.
//!
//! juniper validates field names and value types against these types before any resolver runs;
//! the resolver then hands the raw value to `walcast-filter`, which checks it again against the
//! catalog (permission filters from files take the same path without juniper).

use std::convert::Infallible;

use juniper::{
    meta::{Argument, MetaType},
    ArcStr, DefaultScalarValue as S, FromInputValue, GraphQLType, InputValue, Registry,
};
use walcast_filter::parse::operator_applies;

use crate::info::{ColumnInfo, TableInfo};
use crate::mutation_type::MutationType;
use crate::resolver::impl_graphql_value;
use crate::scalars::{self, Shape};

fn column_arg(r: &mut Registry<S>, c: &ColumnInfo, suffix: &str) -> Argument<S> {
    let shape = if suffix.ends_with("_in") {
        Shape::OptionalListOfRequired
    } else {
        Shape::Optional
    };
    scalars::arg(r, format!("{}{suffix}", c.name).into(), c.scalar, shape)
}

const ALL_SUFFIXES: &[&str] = &[
    "",
    "_not",
    "_in",
    "_not_in",
    "_lt",
    "_lte",
    "_gt",
    "_gte",
    "_contains",
    "_not_contains",
    "_starts_with",
    "_not_starts_with",
    "_ends_with",
    "_not_ends_with",
];

/// `<table>WhereInput`, kept raw: the filter crate parses it.
pub struct WhereInput(pub InputValue<S>);

impl FromInputValue<S> for WhereInput {
    type Error = Infallible;
    fn from_input_value(v: &InputValue<S>) -> Result<Self, Infallible> {
        Ok(WhereInput(v.clone()))
    }
}

impl GraphQLType<S> for WhereInput {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.where_input.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let mut args = Vec::new();
        for c in info.columns.iter().filter(|c| !c.array) {
            let Some(col) = info.table.columns.get(c.index) else {
                continue;
            };
            for suffix in ALL_SUFFIXES {
                if operator_applies(suffix, col) {
                    args.push(column_arg(registry, c, suffix));
                }
            }
        }
        for rel in info.relations() {
            let Some(target) = rel.target() else { continue };
            if rel.is_to_one() {
                args.push(registry.arg::<Option<WhereInput>>(rel.name.clone(), &target));
            } else {
                for q in ["_some", "_every", "_none"] {
                    args.push(
                        registry.arg::<Option<WhereInput>>(format!("{}{q}", rel.name), &target),
                    );
                }
            }
        }
        for combinator in ["AND", "OR", "NOT"] {
            args.push(registry.arg::<Option<Vec<WhereInput>>>(combinator, info));
        }
        registry
            .build_input_object_type::<Self>(info, &args)
            .description(format!(
                "Conditions on rows of {}; the keys of one object must all hold.",
                info.table.qualified_name()
            ))
            .into_meta()
    }
}

impl_graphql_value!(WhereInput, context = (), info = TableInfo);

/// `<table>SubscriptionWhereInput` (Prisma 1).
pub struct SubscriptionWhereInput(pub InputValue<S>);

impl FromInputValue<S> for SubscriptionWhereInput {
    type Error = Infallible;
    fn from_input_value(v: &InputValue<S>) -> Result<Self, Infallible> {
        Ok(SubscriptionWhereInput(v.clone()))
    }
}

impl GraphQLType<S> for SubscriptionWhereInput {
    fn name(info: &TableInfo) -> Option<ArcStr> {
        Some(info.sub_where_input.clone())
    }

    fn meta(info: &TableInfo, registry: &mut Registry<S>) -> MetaType<S> {
        let args = vec![
            registry.arg::<Option<Vec<MutationType>>>("mutation_in", &()),
            registry.arg::<Option<WhereInput>>("node", info),
            registry.arg::<Option<String>>("updatedFields_contains", &()),
            registry.arg::<Option<Vec<String>>>("updatedFields_contains_every", &()),
            registry.arg::<Option<Vec<String>>>("updatedFields_contains_some", &()),
            registry.arg::<Option<Vec<SubscriptionWhereInput>>>("AND", info),
            registry.arg::<Option<Vec<SubscriptionWhereInput>>>("OR", info),
            registry.arg::<Option<Vec<SubscriptionWhereInput>>>("NOT", info),
        ];
        registry
            .build_input_object_type::<Self>(info, &args)
            .into_meta()
    }
}

impl_graphql_value!(SubscriptionWhereInput, context = (), info = TableInfo);
