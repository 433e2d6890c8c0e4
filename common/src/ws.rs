//! What a WebSocket client may send: JSON text frames tagged by `action`.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientAction {
    Input {
        data: String,
    },
    Resize {
        cols: u16,
        rows: u16,
    },
    /// Exactly one of `command`, `task` (name or id), `script` (a batch's
    /// text) or `script_id` (a saved script, logged by its name).
    Run {
        command: Option<String>,
        task: Option<String>,
        script: Option<String>,
        script_id: Option<uuid::Uuid>,
    },
    Cancel {
        run: Option<uuid::Uuid>,
    },
    /// Everything up to `seq` has been rendered (flow control).
    Ack {
        seq: u64,
    },
    Close,
}

const ACTIONS: [&str; 6] = ["input", "resize", "run", "cancel", "ack", "close"];

/// Why a client frame was refused; the text goes to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("messages must be JSON objects with an \"action\" field")]
    NotAnAction,
    #[error("unknown action {0:?} (expected one of input, resize, run, cancel, ack, close)")]
    UnknownAction(String),
    #[error("invalid {action:?} message: {detail}")]
    Invalid { action: String, detail: String },
    #[error("message too large ({size} bytes, at most {max})")]
    TooLarge { size: usize, max: usize },
}

impl ClientAction {
    /// Parses one text frame, explaining precisely what is wrong if it is
    /// not a valid action.
    pub fn parse(text: &str, max_len: usize) -> Result<Self, ProtocolError> {
        if text.len() > max_len {
            return Err(ProtocolError::TooLarge {
                size: text.len(),
                max: max_len,
            });
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| ProtocolError::NotAnAction)?;
        let action = value
            .get("action")
            .and_then(|a| a.as_str())
            .ok_or(ProtocolError::NotAnAction)?
            .to_owned();
        if !ACTIONS.contains(&action.as_str()) {
            return Err(ProtocolError::UnknownAction(action));
        }
        let parsed: Self = serde_json::from_value(value).map_err(|e| ProtocolError::Invalid {
            action: action.clone(),
            detail: e.to_string(),
        })?;
        parsed.validate().map_err(|detail| ProtocolError::Invalid {
            action,
            detail: detail.into(),
        })?;
        Ok(parsed)
    }

    fn validate(&self) -> Result<(), &'static str> {
        match self {
            Self::Resize { cols, rows }
                if *cols == 0 || *rows == 0 || *cols > 1000 || *rows > 1000 =>
            {
                Err("cols and rows must be between 1 and 1000")
            }
            Self::Run {
                command,
                task,
                script,
                script_id,
            } => {
                let given = [command, task, script]
                    .iter()
                    .filter(|f| f.is_some())
                    .count()
                    + usize::from(script_id.is_some());
                if given != 1 {
                    return Err("give exactly one of command, task, script or script_id");
                }
                if [command, task, script]
                    .iter()
                    .any(|f| f.as_deref().is_some_and(|s| s.trim().is_empty()))
                {
                    return Err("the command, task or script is empty");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientAction, ProtocolError> {
        ClientAction::parse(s, 1024)
    }

    #[test]
    fn parses_every_action() {
        assert_eq!(
            parse(r#"{"action":"input","data":"ls\r"}"#),
            Ok(ClientAction::Input {
                data: "ls\r".into()
            })
        );
        assert_eq!(
            parse(r#"{"action":"resize","cols":120,"rows":40}"#),
            Ok(ClientAction::Resize {
                cols: 120,
                rows: 40
            })
        );
        assert!(matches!(
            parse(r#"{"action":"run","task":"restart_app"}"#),
            Ok(ClientAction::Run { task: Some(_), .. })
        ));
        assert!(matches!(
            parse(r#"{"action":"run","script_id":"0190c0de-0000-7000-8000-000000000000"}"#),
            Ok(ClientAction::Run {
                script_id: Some(_),
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"action":"cancel"}"#),
            Ok(ClientAction::Cancel { run: None })
        );
        assert_eq!(
            parse(r#"{"action":"ack","seq":1234}"#),
            Ok(ClientAction::Ack { seq: 1234 })
        );
        assert_eq!(parse(r#"{"action":"close"}"#), Ok(ClientAction::Close));
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(parse("not json"), Err(ProtocolError::NotAnAction));
        assert_eq!(parse("[1,2]"), Err(ProtocolError::NotAnAction));
        assert_eq!(
            parse(r#"{"action":"dance"}"#),
            Err(ProtocolError::UnknownAction("dance".into()))
        );
        let e = parse(r#"{"action":"resize","cols":"wide"}"#);
        assert!(
            matches!(e, Err(ProtocolError::Invalid { ref action, .. }) if action == "resize"),
            "{e:?}"
        );
        assert!(parse(r#"{"action":"resize","cols":0,"rows":10}"#).is_err());
        assert!(parse(r#"{"action":"run","command":"a","script":"b"}"#).is_err());
        assert!(parse(r#"{"action":"run","command":"  "}"#).is_err());
        assert!(parse(r#"{"action":"run"}"#).is_err());
        assert!(parse(
            r#"{"action":"run","script":"ls","script_id":"0190c0de-0000-7000-8000-000000000000"}"#
        )
        .is_err());
        assert!(matches!(
            ClientAction::parse(&"x".repeat(2000), 1024),
            Err(ProtocolError::TooLarge {
                size: 2000,
                max: 1024
            })
        ));
    }
}
