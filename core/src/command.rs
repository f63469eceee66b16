//! Subject commands that travel from a primary to its archive (issue 16): the
//! operation and its arguments as canonical JSON, so the archive runs exactly what the
//! primary ran. Encryption is the caller's (the payload is sealed under the root key).

use serde_json::{json, Value};

/// One subject operation, as the primary ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pseudonymize { subjects: Vec<String>, strategy: String },
    Delete { subjects: Vec<String>, preserve: bool },
    Forget { subjects: Vec<String> },
}

impl Command {
    /// The `operation` column of audit_subject_command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Pseudonymize { .. } => "pseudonymize",
            Command::Delete { .. } => "delete",
            Command::Forget { .. } => "forget",
        }
    }

    pub fn encode(&self) -> String {
        let v = match self {
            Command::Pseudonymize { subjects, strategy } => json!({"op": self.name(), "subjects": subjects, "strategy": strategy}),
            Command::Delete { subjects, preserve } => json!({"op": self.name(), "subjects": subjects, "preserve": preserve}),
            Command::Forget { subjects } => json!({"op": self.name(), "subjects": subjects}),
        };
        v.to_string()
    }

    pub fn decode(text: &str) -> Result<Command, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or(format!("no text field \"{k}\""));
        let subjects = || -> Result<Vec<String>, String> {
            let items = v.get("subjects").and_then(Value::as_array).ok_or("no array field \"subjects\"")?;
            let out: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_string)).collect();
            out.filter(|o| !o.is_empty()).ok_or_else(|| "\"subjects\" must be a non-empty array of strings".to_string())
        };
        match field("op")?.as_str() {
            "pseudonymize" => Ok(Command::Pseudonymize { subjects: subjects()?, strategy: field("strategy")? }),
            "delete" => Ok(Command::Delete {
                subjects: subjects()?,
                preserve: v.get("preserve").and_then(Value::as_bool).ok_or("no boolean field \"preserve\"")?,
            }),
            "forget" => Ok(Command::Forget { subjects: subjects()? }),
            other => Err(format!("unknown operation \"{other}\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command;
    use proptest::prelude::*;

    #[test]
    fn encoding_is_fixed() {
        assert_eq!(
            Command::Delete { subjects: vec!["a".into()], preserve: true }.encode(),
            r#"{"op":"delete","preserve":true,"subjects":["a"]}"#
        );
        assert_eq!(Command::decode(r#"{"op":"drop","subjects":["a"]}"#), Err("unknown operation \"drop\"".into()));
        assert_eq!(Command::decode(r#"{"op":"delete","subjects":["a"]}"#), Err("no boolean field \"preserve\"".into()));
        assert_eq!(Command::decode(r#"{"op":"forget","subjects":[]}"#), Err("\"subjects\" must be a non-empty array of strings".into()));
        assert_eq!(Command::decode(r#"{"op":"forget","subjects":[1]}"#), Err("\"subjects\" must be a non-empty array of strings".into()));
        assert!(Command::decode("not json").is_err());
    }

    proptest! {
        #[test]
        fn every_command_round_trips(subjects in proptest::collection::vec(".*", 1..4), strategy in "[a-z]{0,12}", preserve: bool, which in 0..3u8) {
            let c = match which {
                0 => Command::Pseudonymize { subjects, strategy },
                1 => Command::Delete { subjects, preserve },
                _ => Command::Forget { subjects },
            };
            prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
    }
}
