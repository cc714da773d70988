//! The cost of an operation, weighed after validation and before anything runs: each relation
//! field costs the number of rows it is read for. A list multiplies the rows below it by its
//! `first` (or [`ASSUMED_LIST_ROWS`]), an event or a single row counts 1. Many aliased relation
//! fields, or relations nested in long lists, would otherwise turn one committed row into
//! thousands of reads for every subscriber.

use std::collections::HashMap;

use juniper::{
    DefaultScalarValue as S, Definition, GraphQLError, InputValue, RuleError, ScalarValue,
    SchemaType, Selection, Variables,
};

use crate::info::SchemaInfo;
use crate::Schema;

/// The rows a list counts for when it has no `first`.
pub const ASSUMED_LIST_ROWS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation cost {cost} exceeds the limit of {limit} (WALCAST_MAX_OPERATION_COST): each relation field costs the rows it is read for (a list counts its `first`, {ASSUMED_LIST_ROWS} without one); select fewer relation fields or give lists a smaller `first`")]
pub struct TooCostly {
    pub cost: u64,
    pub limit: u64,
}

impl From<TooCostly> for GraphQLError {
    fn from(e: TooCostly) -> GraphQLError {
        GraphQLError::ValidationError(vec![RuleError::new(&e.to_string(), &[])])
    }
}

/// Refuses an operation whose cost is over `limit`. A document that does not parse, or has no
/// such operation, costs nothing here: validation reports it.
pub fn check(
    schema: &Schema,
    source: &str,
    operation_name: Option<&str>,
    vars: &Variables<S>,
    limit: u64,
) -> Result<u64, TooCostly> {
    let cost = operation_cost(schema, source, operation_name, vars);
    if cost > limit {
        Err(TooCostly { cost, limit })
    } else {
        Ok(cost)
    }
}

/// The cost of the operation `operation_name` (the only one when `None`) of a valid document.
pub fn operation_cost(
    schema: &Schema,
    source: &str,
    operation_name: Option<&str>,
    vars: &Variables<S>,
) -> u64 {
    let Ok(document) = juniper::parser::parse_document_source(source, &schema.schema) else {
        return 0;
    };
    let mut fragments = HashMap::new();
    let mut operation = None;
    for definition in &document {
        match definition {
            Definition::Operation(op) => {
                let name = op.item.name.as_ref().map(|n| n.item);
                if operation_name.is_none() || name == operation_name {
                    operation.get_or_insert(&op.item);
                }
            }
            Definition::Fragment(f) => {
                fragments.insert(
                    f.item.name.item,
                    (f.item.type_condition.item, f.item.selection_set.as_slice()),
                );
            }
        }
    }
    let Some(op) = operation else {
        return 0;
    };
    let root = match op.operation_type {
        juniper::OperationType::Query => Some(schema.schema.concrete_query_type()),
        juniper::OperationType::Mutation => schema.schema.concrete_mutation_type(),
        juniper::OperationType::Subscription => schema.schema.concrete_subscription_type(),
    };
    let Some(root_name) = root.and_then(|t| t.name()) else {
        return 0;
    };
    let mut walk = Walk {
        schema: &schema.schema,
        info: &schema.query_info,
        fragments,
        vars,
        cost: 0,
    };
    walk.selections(root_name, &op.selection_set, 1);
    walk.cost
}

type Fragments<'d> = HashMap<&'d str, (&'d str, &'d [Selection<'d, S>])>;

struct Walk<'a, 'd> {
    schema: &'a SchemaType<S>,
    info: &'a SchemaInfo,
    fragments: Fragments<'d>,
    vars: &'a Variables<S>,
    cost: u64,
}

impl<'d> Walk<'_, 'd> {
    /// Adds the cost of a selection on `type_name`, read for `rows` rows. Validation has ruled
    /// out fragment cycles, and the schema's field limit bounds the expanded document.
    fn selections(&mut self, type_name: &str, set: &'d [Selection<'d, S>], rows: u64) {
        let (schema, info) = (self.schema, self.info);
        for selection in set {
            match selection {
                Selection::Field(f) => {
                    let name = f.item.name.item;
                    // Introspection reads the schema, never a table.
                    if name.starts_with("__") {
                        continue;
                    }
                    let Some(field) = schema
                        .concrete_type_by_name(type_name)
                        .and_then(|t| t.field_by_name(name))
                    else {
                        continue;
                    };
                    let is_relation = info
                        .table(type_name)
                        .is_some_and(|t| t.relation(name).is_some());
                    if is_relation {
                        self.cost = self.cost.saturating_add(rows);
                    }
                    // `Type::is_list` answers false for `[T!]!`; the written form does not.
                    let is_list = field.field_type.to_string().starts_with('[');
                    let inner = if is_list {
                        let first = f
                            .item
                            .arguments
                            .as_ref()
                            .and_then(|a| a.item.get("first"))
                            .and_then(|v| self.int(&v.item));
                        let per_row = match first {
                            Some(n) => u64::try_from(n).unwrap_or(0),
                            None => ASSUMED_LIST_ROWS,
                        };
                        rows.saturating_mul(per_row)
                    } else {
                        rows
                    };
                    if let Some(sub) = &f.item.selection_set {
                        self.selections(field.field_type.innermost_name(), sub, inner);
                    }
                }
                Selection::FragmentSpread(s) => {
                    if let Some((on, sub)) = self.fragments.get(s.item.name.item).copied() {
                        self.selections(on, sub, rows);
                    }
                }
                Selection::InlineFragment(i) => {
                    let on = i
                        .item
                        .type_condition
                        .as_ref()
                        .map(|t| t.item)
                        .unwrap_or(type_name)
                        .to_owned();
                    self.selections(&on, &i.item.selection_set, rows);
                }
            }
        }
    }

    /// An integer argument, literal or from a variable.
    fn int(&self, v: &InputValue<S>) -> Option<i64> {
        match v {
            InputValue::Variable(name) => self.vars.get(name.as_str()).and_then(|v| self.int(v)),
            InputValue::Scalar(s) => s.try_to_int().map(i64::from),
            _ => None,
        }
    }
}
