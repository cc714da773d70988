//! Validation errors with the fix a newcomer needs: juniper's messages name the GraphQL rule,
//! not what to write instead.

use juniper::{GraphQLError, RuleError};

/// `event: create` (an enum literal) where a String is expected: juniper says
/// `Invalid value "create" for type "String"`; the fix is the quotes.
fn event_hint(message: &str) -> Option<String> {
    let rest =
        message.strip_prefix("Invalid value for argument \"event\", reason: Invalid value \"")?;
    let value = rest.strip_suffix("\" for type \"String\"")?;
    let bare = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    bare.then(|| format!("{message}: `event` takes a string, as in event: \"{value}\""))
}

/// The error with hints added to the messages that have one.
pub fn explain(e: GraphQLError) -> GraphQLError {
    match e {
        GraphQLError::ValidationError(errors) => GraphQLError::ValidationError(
            errors
                .into_iter()
                .map(|r| match event_hint(r.message()) {
                    Some(message) => RuleError::new(&message, r.locations()),
                    None => r,
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unquoted_event_gets_the_quoted_form() {
        let m = "Invalid value for argument \"event\", reason: Invalid value \"create\" for type \"String\"";
        assert_eq!(
            event_hint(m).as_deref(),
            Some("Invalid value for argument \"event\", reason: Invalid value \"create\" for type \"String\": `event` takes a string, as in event: \"create\"")
        );
        assert_eq!(
            event_hint("Invalid value for argument \"where\", reason: x"),
            None
        );
    }
}
