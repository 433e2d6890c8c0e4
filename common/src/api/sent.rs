//! A request field as the client sent it, for bodies validated field by
//! field: a value of the wrong type does not fail the whole body, so
//! validation can name every field at fault at once, in its own words.

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Sent<T> {
    /// Absent or `null`.
    #[default]
    Missing,
    Value(T),
    /// Present, but not a `T`.
    WrongType,
}

impl<T> Sent<T> {
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sent<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Null(()),
            Value(T),
            Other(IgnoredAny),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Null(()) => Self::Missing,
            Raw::Value(v) => Self::Value(v),
            Raw::Other(_) => Self::WrongType,
        })
    }
}

impl<T: Serialize> Serialize for Sent<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => v.serialize(s),
            Self::Missing | Self::WrongType => s.serialize_none(),
        }
    }
}

impl<T> From<T> for Sent<T> {
    fn from(v: T) -> Self {
        Self::Value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Body {
        port: Sent<u64>,
        keys: Sent<Vec<Sent<String>>>,
    }

    fn body(json: &str) -> Body {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn absent_null_right_and_wrong_types_are_told_apart() {
        assert_eq!(body("{}").port, Sent::Missing);
        assert_eq!(body(r#"{"port": null}"#).port, Sent::Missing);
        assert_eq!(body(r#"{"port": 22}"#).port, Sent::Value(22));
        for wrong in [r#""22""#, "-1", "2.5", "[]", "{}"] {
            let b = body(&format!(r#"{{"port": {wrong}}}"#));
            assert_eq!(b.port, Sent::WrongType, "{wrong}");
        }
        let b = body(r#"{"keys": ["a", 1]}"#);
        assert_eq!(
            b.keys,
            Sent::Value(vec![Sent::Value("a".into()), Sent::WrongType])
        );
    }
}
