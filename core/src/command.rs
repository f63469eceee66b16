//! Subject commands that travel from a primary to its archive (issue 16): the
//! operation and its arguments as canonical JSON, so the archive runs exactly what the
//! primary ran. Encryption is the caller's (the payload is sealed under the root key).

use serde_json::{json, Value};

/// One subject operation, as the primary ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Pseudonymize { subject: String, strategy: String },
    Delete { subject: String, preserve: bool },
    Forget { subject: String },
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
            Command::Pseudonymize { subject, strategy } => json!({"op": self.name(), "subject": subject, "strategy": strategy}),
            Command::Delete { subject, preserve } => json!({"op": self.name(), "subject": subject, "preserve": preserve}),
            Command::Forget { subject } => json!({"op": self.name(), "subject": subject}),
        };
        v.to_string()
    }

    pub fn decode(text: &str) -> Result<Command, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or(format!("no text field \"{k}\""));
        match field("op")?.as_str() {
            "pseudonymize" => Ok(Command::Pseudonymize { subject: field("subject")?, strategy: field("strategy")? }),
            "delete" => Ok(Command::Delete {
                subject: field("subject")?,
                preserve: v.get("preserve").and_then(Value::as_bool).ok_or("no boolean field \"preserve\"")?,
            }),
            "forget" => Ok(Command::Forget { subject: field("subject")? }),
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
            Command::Delete { subject: "a".into(), preserve: true }.encode(),
            r#"{"op":"delete","preserve":true,"subject":"a"}"#
        );
        assert_eq!(Command::decode(r#"{"op":"drop","subject":"a"}"#), Err("unknown operation \"drop\"".into()));
        assert_eq!(Command::decode(r#"{"op":"delete","subject":"a"}"#), Err("no boolean field \"preserve\"".into()));
        assert!(Command::decode("not json").is_err());
    }

    proptest! {
        #[test]
        fn every_command_round_trips(subject in ".*", strategy in "[a-z]{0,12}", preserve: bool, which in 0..3u8) {
            let c = match which {
                0 => Command::Pseudonymize { subject, strategy },
                1 => Command::Delete { subject, preserve },
                _ => Command::Forget { subject },
            };
            prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
    }
}
