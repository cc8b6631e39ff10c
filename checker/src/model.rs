//! The sequential specifications a history is checked against. Each is a
//! stateright [`SequentialSpec`] over one key's value, so the same model
//! serves our search and stateright's own tester (the differential test).
//!
//! - [`Register`]: read and write.
//! - [`CasRegister`]: read, write and compare-and-set.
//! - [`Kv`]: one key of a key-value store: read, write, cas, delete and
//!   append (string append; an absent key counts as the empty string).
//!
//! [`KvStore`] is the whole store (every key at once), used to check the
//! checker's per-key split against stateright on multi-key histories.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use stateright::semantics::SequentialSpec;

use crate::key::Key;
use crate::operation::{Input, Output};
use crate::value::{Value, show};

/// Which model a history is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    Register,
    CasRegister,
    Kv,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
        }
    }

    /// Whether the model has this operation.
    pub fn supports(self, input: &Input) -> bool {
        matches!(
            (self, input),
            (_, Input::Read | Input::Write(_))
                | (ModelKind::CasRegister | ModelKind::Kv, Input::Cas(..))
                | (ModelKind::Kv, Input::Delete | Input::Append(_))
        )
    }
}

impl FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(ModelKind::Register),
            "cas-register" => Ok(ModelKind::CasRegister),
            "kv" => Ok(ModelKind::Kv),
            other => Err(format!("unknown model `{other}` (expected register, cas-register or kv)")),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result an operation gets when it runs on a key holding `value`, and
/// the value it leaves.
pub fn run(value: &Option<Value>, input: &Input) -> (Output, Option<Value>) {
    match input {
        Input::Read => (Output::Read(value.clone()), value.clone()),
        Input::Write(v) => (Output::Write, Some(v.clone())),
        Input::Cas(expected, new) if value.as_ref() == Some(expected) => (Output::Cas, Some(new.clone())),
        Input::Cas(..) => (Output::CasMismatch, value.clone()),
        Input::Delete => (Output::Delete, None),
        Input::Append(suffix) => {
            // Appending to an integer: its text is the prefix.
            let appended = format!("{}{suffix}", value.as_ref().map(Value::text).unwrap_or_default());
            (Output::Append, Some(Value::Str(appended)))
        }
    }
}

/// Whether `input` may complete with `output` on a key holding `value`; if
/// so, the value it leaves. An unknown outcome (info) is the operation
/// happening now; "never happening" is the search placing it last.
pub fn step(value: &Option<Value>, input: &Input, output: &Output) -> Option<Option<Value>> {
    let (expected, next) = run(value, input);
    (expected == *output || *output == Output::Unknown).then_some(next)
}

/// Why `input` could not complete with `output` on a key holding `value`.
pub fn explain(value: &Option<Value>, input: &Input, output: &Output) -> String {
    match (input, output) {
        (Input::Read, Output::Read(got)) => {
            format!("it read {} but the value was {}", show(got), show(value))
        }
        (Input::Cas(e, _), Output::Cas) => format!("it expected {e} but the value was {}", show(value)),
        (Input::Cas(e, _), Output::CasMismatch) => format!("it reported a mismatch, but the value was {e}"),
        _ => format!("it cannot complete that way on value {}", show(value)),
    }
}

macro_rules! cell_model {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub Option<Value>);

        impl $name {
            pub const KIND: ModelKind = $kind;
        }

        impl SequentialSpec for $name {
            type Op = Input;
            type Ret = Output;

            fn invoke(&mut self, op: &Input) -> Output {
                let (output, next) = run(&self.0, op);
                self.0 = next;
                output
            }

            fn is_valid_step(&mut self, op: &Input, ret: &Output) -> bool {
                match step(&self.0, op, ret) {
                    Some(next) => {
                        self.0 = next;
                        true
                    }
                    None => false,
                }
            }
        }
    };
}

cell_model!(
    /// A read/write register.
    Register,
    ModelKind::Register
);
cell_model!(
    /// A register with compare-and-set.
    CasRegister,
    ModelKind::CasRegister
);
cell_model!(
    /// One key of a key-value store.
    Kv,
    ModelKind::Kv
);

/// A whole key-value store; operations name their key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KvStore(pub BTreeMap<Option<Key>, Option<Value>>);

impl SequentialSpec for KvStore {
    type Op = (Option<Key>, Input);
    type Ret = Output;

    fn invoke(&mut self, (key, op): &Self::Op) -> Output {
        let value = self.0.entry(key.clone()).or_default();
        let (output, next) = run(value, op);
        *value = next;
        output
    }

    fn is_valid_step(&mut self, (key, op): &Self::Op, ret: &Output) -> bool {
        let value = self.0.entry(key.clone()).or_default();
        match step(value, op, ret) {
            Some(next) => {
                *value = next;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_and_append_follow_their_rules() {
        let one = Some(Value::Int(1));
        assert_eq!(step(&one, &Input::Cas(Value::Int(1), Value::Int(2)), &Output::Cas), Some(Some(Value::Int(2))));
        assert_eq!(step(&one, &Input::Cas(Value::Int(3), Value::Int(2)), &Output::Cas), None);
        assert_eq!(step(&one, &Input::Cas(Value::Int(3), Value::Int(2)), &Output::CasMismatch), Some(one.clone()));
        assert_eq!(step(&one, &Input::Cas(Value::Int(1), Value::Int(2)), &Output::CasMismatch), None);
        assert_eq!(step(&None, &Input::Append("a".into()), &Output::Append), Some(Some(Value::Str("a".into()))));
        let ab = step(&Some(Value::Str("a".into())), &Input::Append("b".into()), &Output::Append);
        assert_eq!(ab, Some(Some(Value::Str("ab".into()))));
        assert_eq!(step(&one, &Input::Delete, &Output::Unknown), Some(None));
        assert_eq!(step(&None, &Input::Read, &Output::Read(None)), Some(None));
    }

    #[test]
    fn models_say_which_operations_they_have() {
        assert!(!ModelKind::Register.supports(&Input::Cas(Value::Int(1), Value::Int(2))));
        assert!(ModelKind::CasRegister.supports(&Input::Cas(Value::Int(1), Value::Int(2))));
        assert!(!ModelKind::CasRegister.supports(&Input::Delete));
        assert!(ModelKind::Kv.supports(&Input::Append("x".into())));
        assert_eq!("cas-register".parse::<ModelKind>(), Ok(ModelKind::CasRegister));
        assert!("queue".parse::<ModelKind>().is_err());
    }
}
