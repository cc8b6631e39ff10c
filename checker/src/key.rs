//! The keys of a key-value history. A key keeps the type it was written
//! with: the JSON key `1` and the key `"1"` are different keys, as they are
//! to the store and to Jepsen.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    /// A JSON integer or string; anything else is not a key.
    pub fn from_json(v: &serde_json::Value) -> Option<Key> {
        Value::from_json(v).map(|v| match v {
            Value::Int(i) => Key::Int(i),
            Value::Str(s) => Key::Str(s),
        })
    }

    /// The key's text, when it is a string key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            Key::Int(_) => None,
        }
    }

    /// The key as a person reads it with its type showing: `7` or `"7"`.
    pub fn quoted(&self) -> String {
        match self {
            Key::Int(i) => i.to_string(),
            Key::Str(s) => format!("{s:?}"),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::Str(s.to_string())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::Str(s)
    }
}

/// Bare text, as reports and plots label a key.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Str(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_key_and_its_text_are_different_keys() {
        let int = Key::from_json(&serde_json::json!(1)).unwrap();
        let text = Key::from_json(&serde_json::json!("1")).unwrap();
        assert_ne!(int, text);
        assert_eq!((int.quoted(), text.quoted()), ("1".to_string(), "\"1\"".to_string()));
        assert_eq!(serde_json::to_value(&int).unwrap(), serde_json::json!(1));
        assert_eq!(serde_json::to_value(&text).unwrap(), serde_json::json!("1"));
        assert_eq!(Key::from_json(&serde_json::json!([1])), None);
    }
}
