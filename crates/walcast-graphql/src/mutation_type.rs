//! Prisma 1's kinds of change: the `mutation` of a subscription payload and the values of its
//! `mutation_in` filter.

use juniper::GraphQLEnum;

#[derive(GraphQLEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum MutationType {
    CREATED,
    UPDATED,
    DELETED,
}
