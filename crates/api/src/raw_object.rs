//! A JSON object read only as far as the gateway needs it: its members in
//! order, each value kept as its raw text. A chat request's messages — most of
//! its bytes — are never parsed into values, and writing the object back out
//! copies them as they came.
//!
//! Linear in the body's size: a repeated name is looked for among the members
//! read so far, and there are at most [`MAX_MEMBERS`] of them (a chat request
//! has about thirty), so that search is bounded too.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The most top-level members a body may have.
pub const MAX_MEMBERS: usize = 256;

/// The members of a JSON object; values are raw JSON text.
pub struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// A member name, borrowed from the input unless it has escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> RawObject<'a> {
    /// Reads `json`, which must be one object.
    pub fn parse(json: &'a [u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(json)
    }

    /// The raw JSON of member `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Member `name` as a string, if it is one.
    pub fn string(&self, name: &str) -> Option<String> {
        serde_json::from_str(self.get(name)?).ok()
    }

    /// Member `name` as a boolean, if it is one.
    pub fn bool(&self, name: &str) -> Option<bool> {
        serde_json::from_str(self.get(name)?).ok()
    }

    /// Member `name` as a non-negative integer, if it is one.
    pub fn u64(&self, name: &str) -> Option<u64> {
        serde_json::from_str(self.get(name)?).ok()
    }

    /// Sets member `name` to `value` (raw JSON), in place if it exists.
    pub fn set(&mut self, name: &'a str, value: String) {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = Cow::Owned(value),
            None => self.members.push((Cow::Borrowed(name), Cow::Owned(value))),
        }
    }

    /// The object as JSON text.
    pub fn to_vec(&self) -> Vec<u8> {
        let size = self
            .members
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (i, (name, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, name.as_ref());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
        out
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;

        impl<'de> Visitor<'de> for Members {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(Cow<'de, str>, Cow<'de, str>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8).min(MAX_MEMBERS));
                while let Some((Name(name), value)) =
                    map.next_entry::<Name<'de>, &'de RawValue>()?
                {
                    let value = Cow::Borrowed(value.get());
                    // A repeated name keeps its last value, as JSON parsers
                    // do: what the gateway decides on is what it forwards.
                    let full = members.len() >= MAX_MEMBERS;
                    match members.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => *v = value,
                        None if full => {
                            return Err(de::Error::custom(format!(
                                "more than {MAX_MEMBERS} top-level members"
                            )));
                        }
                        None => members.push((name, value)),
                    }
                }
                Ok(RawObject { members })
            }
        }

        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn reads_members_and_writes_them_back_with_changes() {
        let body = br#"{"model":"other","model":"gpt","messages":[{"role":"user","content":"caf\u00e9 \"hi\""}],"stream":true,"max_tokens":16,"a\"b":null}"#;
        let mut object = RawObject::parse(body).unwrap();
        assert_eq!(object.string("model").as_deref(), Some("gpt"));
        assert_eq!(object.bool("stream"), Some(true));
        assert_eq!(object.u64("max_tokens"), Some(16));
        assert_eq!(object.u64("stream"), None, "a boolean is not a number");
        assert_eq!(object.string("missing"), None);
        object.set("model", serde_json::to_string("upstream \"x\"").unwrap());
        object.set("stream_options", r#"{"include_usage":true}"#.into());
        let out: Value = serde_json::from_slice(&object.to_vec()).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "upstream \"x\"",
                "messages": [{"role": "user", "content": "café \"hi\""}],
                "stream": true,
                "max_tokens": 16,
                "a\"b": null,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn refuses_anything_but_one_object() {
        for body in [&b"[]"[..], b"\"model\"", b"{", b"{}{}", b"", b"{\"a\":}"] {
            assert!(RawObject::parse(body).is_err(), "{body:?}");
        }
        assert!(RawObject::parse(b" { } ").is_ok());
    }

    #[test]
    fn the_members_are_capped() {
        let body = |n: usize| {
            let members: Vec<String> = (0..n).map(|i| format!("\"m{i}\":{i}")).collect();
            format!("{{{}}}", members.join(","))
        };
        assert!(RawObject::parse(body(MAX_MEMBERS).as_bytes()).is_ok());
        let e = RawObject::parse(body(MAX_MEMBERS + 1).as_bytes())
            .err()
            .unwrap();
        assert!(e.to_string().contains("top-level members"), "{e}");
        // Repeats do not count twice.
        let repeated = format!("{{{}}}", vec!["\"a\":1"; 10 * MAX_MEMBERS].join(","));
        assert!(RawObject::parse(repeated.as_bytes()).is_ok());
    }
}
