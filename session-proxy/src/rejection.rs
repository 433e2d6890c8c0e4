//! Requests the extractors refuse (a JSON body of the wrong shape, bad
//! JSON, no JSON content type, a bad query string), in our error format:
//! the field at fault when serde names it, and a message written for a
//! person instead of axum's and serde's raw text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;

use crate::error::ApiError;

pub(crate) fn from_rejection(err: &JsonRejection) -> ApiError {
    match err {
        JsonRejection::JsonDataError(_) => data_error(&inner_text(err), "the body"),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "the request body is not valid JSON ({})",
                strip_position(&inner_text(err))
            ),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON, with Content-Type: application/json",
        ),
        _ if err.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the request body could not be read",
        ),
    }
}

pub(crate) fn from_query_rejection(err: &QueryRejection) -> ApiError {
    let ApiError { field, message, .. } = data_error(&inner_text(err), "the query");
    ApiError {
        field,
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }
}

/// The text of what serde said: `path: message at line L column C`.
fn inner_text(err: &dyn std::error::Error) -> String {
    err.source().map(ToString::to_string).unwrap_or_default()
}

/// A body (or query) of the wrong shape: 422 naming the field.
fn data_error(text: &str, whole: &str) -> ApiError {
    let (path, message) = split_path(text);
    let message = strip_position(message);
    let prefixed = |name: &str| match path {
        Some(p) => format!("{p}.{name}"),
        None => name.to_owned(),
    };
    if let Some(name) = quoted_after(message, "missing field ") {
        let field = prefixed(name);
        return ApiError::invalid(field.clone(), format!("{field} is required"));
    }
    if let Some(name) = quoted_after(message, "unknown field ") {
        // The path already ends with the unknown field itself.
        let field = path.map_or_else(|| name.to_owned(), str::to_owned);
        return ApiError::invalid(field.clone(), format!("{field} is not a known field"));
    }
    let what = explain(message);
    match path {
        Some(p) => ApiError::invalid(p.to_owned(), format!("{p}: {what}")),
        None => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{whole}: {what}"),
        ),
    }
}

/// `host_id: UUID parsing failed…` → (`host_id`, `UUID parsing failed…`);
/// no path when serde did not know it (the top level).
fn split_path(text: &str) -> (Option<&str>, &str) {
    if let Some((path, rest)) = text.split_once(": ") {
        let is_path = !path.is_empty()
            && path != "."
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.[]?-".contains(&b));
        if is_path {
            return (Some(path), rest);
        }
    }
    (None, text)
}

/// Drops serde_json's ` at line L column C`.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    }
}

/// The name in backquotes after `prefix`: "missing field `name`" → name.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

/// Serde's wording, in ours.
fn explain(message: &str) -> String {
    if message.contains("UUID") {
        return "not a valid id".into();
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((got, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            return format!("expected {}, got {got}", expected_in_words(expected));
        }
    }
    message.to_owned()
}

fn expected_in_words(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i32" | "i64" | "usize" => "a whole number",
        "a boolean" | "a string" | "a sequence" => expected,
        e if e.starts_with("struct ") || e.starts_with("a map") => "a JSON object",
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> (Option<String>, String) {
        let e = data_error(text, "the body");
        (e.field.map(|f| f.into_owned()), e.message)
    }

    #[test]
    fn a_bad_id_names_its_field_without_serde_s_wording() {
        let (field, message) = data(
            "host_id: UUID parsing failed: invalid character: expected an optional prefix \
             of `urn:uuid:` followed by [0-9a-fA-F-], found `n` at 1 at line 1 column 15",
        );
        assert_eq!(field.as_deref(), Some("host_id"));
        assert_eq!(message, "host_id: not a valid id");
    }

    #[test]
    fn wrong_types_missing_and_unknown_fields_are_explained() {
        let (field, message) =
            data("cols: invalid type: string \"wide\", expected u16 at line 1 column 20");
        assert_eq!(field.as_deref(), Some("cols"));
        assert_eq!(
            message,
            "cols: expected a whole number, got string \"wide\""
        );
        let (field, message) = data("missing field `host_id` at line 1 column 2");
        assert_eq!(field.as_deref(), Some("host_id"));
        assert_eq!(message, "host_id is required");
        let (field, message) =
            data("colour: unknown field `colour`, expected one of `command`, `script` at line 1 column 9");
        assert_eq!(field.as_deref(), Some("colour"));
        assert_eq!(message, "colour is not a known field");
        let (field, message) =
            data("invalid type: sequence, expected struct Open at line 1 column 0");
        assert_eq!(field, None);
        assert_eq!(message, "the body: expected a JSON object, got sequence");
    }

    #[test]
    fn positions_go_and_paths_are_recognised() {
        assert_eq!(
            strip_position("expected `,` at line 1 column 9"),
            "expected `,`"
        );
        assert_eq!(split_path("a.b[0]: x"), (Some("a.b[0]"), "x"));
        assert_eq!(split_path("invalid type: map"), (None, "invalid type: map"));
    }
}
