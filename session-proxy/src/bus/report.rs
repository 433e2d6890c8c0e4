//! What a live feed hands its viewers: a runner's message from the events
//! exchange, decoded, or a note of the feed's own.

use lapin::types::FieldTable;
use lapin::BasicProperties;
use shellway_common::browser::LinkState;
use shellway_common::Event;

/// What a runner reported, decoded from one message of the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    Output {
        meta: shellway_common::OutputMeta,
        data: bytes::Bytes,
    },
    Event(Event),
    /// Not from the broker: the live feed lost it, or has it back.
    Link(LinkState),
    /// Not from the broker: the session's status as the database has it,
    /// read by the live feed now and then for what the bus did not bring.
    Stored(crate::fanout::StoredStatus),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("message of unknown type {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    Meta(#[from] shellway_common::output::OutputMetaError),
    #[error("malformed event: {0}")]
    Json(#[from] serde_json::Error),
}

impl Report {
    pub(crate) fn decode(props: &BasicProperties, data: Vec<u8>) -> Result<Self, ReportError> {
        use shellway_common::topology::{KIND_EVENT, KIND_OUTPUT};
        let kind = props
            .kind()
            .as_ref()
            .map(|k| k.as_str())
            .unwrap_or_default();
        match kind {
            KIND_OUTPUT => {
                let empty = FieldTable::default();
                let headers = props.headers().as_ref().unwrap_or(&empty);
                let meta = shellway_common::OutputMeta::from_headers(headers)?;
                Ok(Self::Output {
                    meta,
                    data: data.into(),
                })
            }
            KIND_EVENT => Ok(Self::Event(serde_json::from_slice(&data)?)),
            other => Err(ReportError::UnknownType(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shellway_common::amqp;
    use shellway_common::{OutputMeta, Stream};
    use uuid::Uuid;

    #[test]
    fn reports_decode_from_what_runners_send() {
        let meta = OutputMeta {
            seq: 7,
            stream: Stream::Pty,
            run: None,
        };
        let out = Report::decode(&amqp::output_properties(&meta), b"hi".to_vec());
        assert!(
            matches!(out, Ok(Report::Output { meta: m, ref data }) if m == meta && &data[..] == b"hi")
        );
        let (_, body) = amqp::encode_event(
            Uuid::nil(),
            &Event::error(shellway_common::ErrorKind::Ssh, "x"),
        );
        assert!(matches!(
            Report::decode(&amqp::event_properties(), body),
            Ok(Report::Event(_))
        ));
        assert!(Report::decode(&amqp::event_properties(), b"{nope".to_vec()).is_err());
        assert!(Report::decode(&BasicProperties::default(), vec![]).is_err());
        let no_headers =
            BasicProperties::default().with_type(shellway_common::topology::KIND_OUTPUT.into());
        assert!(Report::decode(&no_headers, vec![1]).is_err());
    }
}
