//! The values a history carries: JSON integers or strings.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Str(String),
}

impl Value {
    /// Reads a command-line value: an integer if it parses as one.
    pub fn parse(text: &str) -> Value {
        text.parse().map(Value::Int).unwrap_or_else(|_| Value::Str(text.to_string()))
    }

    /// The value as text, as an append extends it (an integer's digits).
    pub fn text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
        }
    }

    /// A JSON integer or string; anything else is not a value.
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(Value::Int),
            serde_json::Value::String(s) => Some(Value::Str(s.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// How a possibly absent value reads to a person.
pub fn show(v: &Option<Value>) -> String {
    v.as_ref().map_or_else(|| "absent".to_string(), |v| v.to_string())
}
