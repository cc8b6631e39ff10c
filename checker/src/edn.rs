//! Jepsen's `history.edn`: one op map per line (or one vector of them), as
//! Jepsen and Knossos write register, cas-register and independent-key
//! histories. Independent keys are `[key value]` tuples in `:value`
//! (jepsen.independent), recognised when any read or write carries one.
//!
//! The history is checked by Knossos's rules ([`Semantics::Knossos`]): an
//! `:ok` read of nil matches any value, every `:fail` did not happen, an
//! `:info` may have happened at any time after its invocation or never, and
//! an `:invoke` never completed is an `:info`. Keys keep their EDN type:
//! the key `1` and the key `"1"` are different keys.
//!
//! Only the EDN that histories use is read: nil, booleans, numbers, strings,
//! keywords, symbols, vectors, lists, maps, sets, tagged values (`#inst`,
//! record literals) and comments.

use crate::history::{Event, EventType, History, HistoryError, OPERATIONS, Process, Semantics};
use crate::key::Key;

#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
    Set(Vec<Edn>),
    Tagged(String, Box<Edn>),
}

impl Edn {
    fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(pairs) => pairs.iter().find(|(k, _)| matches!(k, Edn::Keyword(n) if n == key)).map(|(_, v)| v),
            Edn::Tagged(_, inner) => inner.get(key),
            _ => None,
        }
    }

    fn to_json(&self) -> Result<serde_json::Value, String> {
        Ok(match self {
            Edn::Nil => serde_json::Value::Null,
            Edn::Bool(b) => (*b).into(),
            Edn::Int(i) => (*i).into(),
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => s.clone().into(),
            Edn::Vector(items) | Edn::List(items) => {
                serde_json::Value::Array(items.iter().map(Edn::to_json).collect::<Result<_, _>>()?)
            }
            other => return Err(format!("unsupported value {other:?}")),
        })
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl Parser<'_> {
    fn skip_blank(&mut self) {
        while let Some(&c) = self.text.get(self.pos) {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.text.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'#' if self.text.get(self.pos + 1) == Some(&b'_') => {
                    self.pos += 2;
                    let _ = self.value();
                }
                _ => break,
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_blank();
        self.pos >= self.text.len()
    }

    fn token(&mut self) -> &str {
        let start = self.pos;
        while let Some(&c) = self.text.get(self.pos) {
            if c.is_ascii_whitespace() || b",()[]{}\"".contains(&c) {
                break;
            }
            self.pos += 1;
        }
        std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("")
    }

    fn value(&mut self) -> Result<Edn, String> {
        self.skip_blank();
        let Some(&c) = self.text.get(self.pos) else { return Err("unexpected end of input".into()) };
        match c {
            b'{' => {
                self.pos += 1;
                let items = self.sequence(b'}')?;
                if items.len() % 2 != 0 {
                    return Err("a map needs an even number of forms".into());
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Ok(Edn::Map(pairs))
            }
            b'[' => {
                self.pos += 1;
                Ok(Edn::Vector(self.sequence(b']')?))
            }
            b'(' => {
                self.pos += 1;
                Ok(Edn::List(self.sequence(b')')?))
            }
            b'"' => self.string(),
            b'#' => {
                self.pos += 1;
                if self.text.get(self.pos) == Some(&b'{') {
                    self.pos += 1;
                    return Ok(Edn::Set(self.sequence(b'}')?));
                }
                let tag = self.token().to_string();
                if tag.is_empty() {
                    return Err("a # must start a set or a tag".into());
                }
                Ok(Edn::Tagged(tag, Box::new(self.value()?)))
            }
            b':' => {
                self.pos += 1;
                let name = self.token().to_string();
                if name.is_empty() {
                    return Err("empty keyword".into());
                }
                Ok(Edn::Keyword(name))
            }
            b')' | b']' | b'}' => Err(format!("unexpected `{}`", c as char)),
            _ => {
                let tok = self.token().to_string();
                atom(&tok)
            }
        }
    }

    fn sequence(&mut self, close: u8) -> Result<Vec<Edn>, String> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            match self.text.get(self.pos) {
                None => return Err(format!("missing closing `{}`", close as char)),
                Some(&c) if c == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn string(&mut self) -> Result<Edn, String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.text.get(self.pos) else { return Err("unterminated string".into()) };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.text.get(self.pos) else { return Err("unterminated string".into()) };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map(Edn::Str).map_err(|_| "string is not UTF-8".into())
    }
}

fn atom(tok: &str) -> Result<Edn, String> {
    match tok {
        "nil" => return Ok(Edn::Nil),
        "true" => return Ok(Edn::Bool(true)),
        "false" => return Ok(Edn::Bool(false)),
        _ => {}
    }
    let number = tok.trim_end_matches(['N', 'M']);
    if number.starts_with(|c: char| c.is_ascii_digit() || ((c == '-' || c == '+') && number.len() > 1)) {
        if let Ok(i) = number.parse::<i64>() {
            return Ok(Edn::Int(i));
        }
        if let Ok(f) = number.parse::<f64>() {
            return Ok(Edn::Float(f));
        }
        return Err(format!("bad number `{tok}`"));
    }
    if tok.is_empty() {
        return Err("unexpected character".into());
    }
    Ok(Edn::Symbol(tok.to_string()))
}

/// Reads a Jepsen history into events in the shared format.
pub fn read_history(text: &str, source: &str) -> Result<History, HistoryError> {
    let mut p = Parser { text: text.as_bytes(), pos: 0, line: 1 };
    let mut forms: Vec<(usize, Edn)> = Vec::new();
    while !p.at_end() {
        let line = p.line;
        let form = p.value().map_err(|m| HistoryError::at(source, p.line, m))?;
        match form {
            // A whole history written as one vector or list of op maps.
            Edn::Vector(items) | Edn::List(items) if forms.is_empty() => {
                forms.extend(items.into_iter().map(|i| (line, i)));
            }
            other => forms.push((line, other)),
        }
    }
    // A plain register's reads and writes carry scalars (only a cas a
    // pair), an independent history's every value is a [key value] tuple.
    let independent = forms.iter().any(|(_, op)| {
        matches!(op.get("f"), Some(Edn::Keyword(f)) if f == "read" || f == "write")
            && matches!(op.get("value"), Some(Edn::Vector(v)) if v.len() == 2)
    });
    let mut history = History { source: source.to_string(), semantics: Semantics::Knossos, ..History::default() };
    for (position, (line, op)) in forms.into_iter().enumerate() {
        let event = event_of(&op, position as u64, independent).map_err(|m| HistoryError::at(source, line, m))?;
        history.push(event, line)?;
    }
    Ok(history)
}

/// A key keeps its EDN type: integers and strings are the store's own kinds
/// of key; a keyword is the string of its printed name (`:a`), and any other
/// form the string of its JSON rendering.
fn key_of(k: &Edn) -> Result<Key, String> {
    Ok(match k {
        Edn::Int(i) => Key::Int(*i),
        Edn::Str(s) => Key::Str(s.clone()),
        Edn::Keyword(k) => Key::Str(format!(":{k}")),
        other => Key::Str(other.to_json()?.to_string()),
    })
}

fn event_of(op: &Edn, position: u64, independent: bool) -> Result<Event, String> {
    if !matches!(op, Edn::Map(_) | Edn::Tagged(..)) {
        return Err(format!("expected an op map, found {op:?}"));
    }
    let keyword = |field: &str| match op.get(field) {
        Some(Edn::Keyword(k)) => Ok(k.clone()),
        Some(other) => Err(format!("`:{field}` must be a keyword, not {other:?}")),
        None => Err(format!("missing `:{field}`")),
    };
    let kind = match keyword("type")?.as_str() {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        other => return Err(format!("unknown `:type` :{other}")),
    };
    let process = match op.get("process") {
        Some(Edn::Int(p)) if *p >= 0 => Process::Client(*p as u64),
        Some(Edn::Keyword(k)) if k == "nemesis" => Process::Nemesis,
        Some(other) => return Err(format!("`:process` must be a non-negative integer or :nemesis, not {other:?}")),
        None => return Err("missing `:process`".into()),
    };
    let f = match op.get("f") {
        Some(Edn::Keyword(k) | Edn::Symbol(k) | Edn::Str(k)) => k.clone(),
        Some(other) => return Err(format!("`:f` must be a keyword, not {other:?}")),
        None => return Err("missing `:f`".into()),
    };
    let int = |field: &str| match op.get(field) {
        Some(Edn::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
        None | Some(Edn::Nil) => Ok(None),
        Some(other) => Err(format!("`:{field}` must be a non-negative integer, not {other:?}")),
    };
    let raw = op.get("value").cloned().unwrap_or(Edn::Nil);
    let (key, value) = match (&process, independent) {
        (Process::Client(_), true) => match raw {
            Edn::Vector(mut kv) if kv.len() == 2 => {
                let v = kv.pop().expect("two items");
                let k = kv.pop().expect("two items");
                (Some(key_of(&k)?), v)
            }
            // An invocation of a read in some Jepsen versions carries only nil.
            other => return Err(format!("independent-key history: `:value` must be [key value], not {other:?}")),
        },
        _ => (None, raw),
    };
    if process != Process::Nemesis && !OPERATIONS.contains(&f.as_str()) {
        return Err(format!("unknown operation :{f} (expected one of {})", OPERATIONS.join(", ")));
    }
    let value =
        if process == Process::Nemesis { serde_json::Value::String(format!("{value:?}")) } else { value.to_json()? };
    let error = op.get("error").map(|e| match e {
        Edn::Keyword(k) | Edn::Str(k) => k.clone(),
        other => format!("{other:?}"),
    });
    let mut event =
        Event::new(int("index")?.unwrap_or(position), kind, process, f, key, value, int("time")?.unwrap_or(0));
    event.error = error;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jepsen_cas_register_history() {
        let text = r#"{:type :invoke, :f :write, :value 3, :process 0, :time 10, :index 0}
{:type :invoke, :f :cas, :value [3 4], :process 1, :time 11, :index 1}
{:type :ok, :f :write, :value 3, :process 0, :time 12, :index 2}
{:type :fail, :f :cas, :value [3 4], :process 1, :time 13, :index 3, :error :mismatch}
{:type :info, :f :start, :value nil, :process :nemesis, :time 14, :index 4} ; comment"#;
        let h = read_history(text, "history.edn").unwrap();
        assert_eq!(h.events.len(), 5);
        assert_eq!(h.events[1].value, serde_json::json!([3, 4]));
        assert_eq!(h.events[3].error.as_deref(), Some("mismatch"));
        assert_eq!(h.events[4].process, Process::Nemesis);
        assert_eq!(h.events[0].key, None);
    }

    #[test]
    fn reads_independent_keys_and_a_vector_of_ops() {
        let text = r#"[{:type :invoke, :f :read, :value [7 nil], :process 0}
 {:type :ok, :f :read, :value [7 2], :process 0}
 {:type :invoke, :f :cas, :value [8 [1 2]], :process 1}]"#;
        let h = read_history(text, "h.edn").unwrap();
        assert_eq!(h.events[1].key, Some(Key::Int(7)));
        assert_eq!(h.events[1].value, serde_json::json!(2));
        assert_eq!(h.events[2].value, serde_json::json!([1, 2]));
        assert_eq!(h.events[2].index, 2);
    }

    #[test]
    fn broken_edn_names_the_line() {
        let err = read_history("{:type :invoke, :f :read, :process 0}\n{:type :ok :f", "h.edn").unwrap_err();
        assert!(err.to_string().starts_with("h.edn:2: missing closing `}`"), "{err}");
        let err = read_history("{:type :invoke, :f :incr, :process 0}", "h.edn").unwrap_err();
        assert!(err.to_string().contains("unknown operation :incr"), "{err}");
    }
}
