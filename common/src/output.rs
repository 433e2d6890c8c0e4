//! Terminal and exec output on the hot path: raw bytes in the AMQP body,
//! its metadata in AMQP headers, and the WebSocket binary frame layout.
//! No JSON and no base64 here.

use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which output a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The interactive shell's terminal.
    Pty,
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pty => "pty",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pty" => Some(Self::Pty),
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// Metadata of one output message. `seq` counts output messages of a
/// session from 1 with no gaps, across the PTY and every run, so a consumer
/// can tell exactly what it has and what it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputMeta {
    pub seq: u64,
    pub stream: Stream,
    pub run: Option<Uuid>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputMetaError {
    #[error("output message without a valid `{0}` header")]
    Missing(&'static str),
}

const SEQ: &str = "seq";
const STREAM: &str = "stream";
const RUN: &str = "run";

impl OutputMeta {
    pub fn to_headers(&self) -> FieldTable {
        let mut t = FieldTable::default();
        // AMQP has no unsigned 64-bit field type; sequence numbers never
        // get near i64::MAX.
        t.insert(SEQ.into(), AMQPValue::LongLongInt(self.seq as i64));
        // A long string: RabbitMQ reads field type `s` as a short integer
        // (AMQP errata), so a short-string header breaks the channel.
        t.insert(
            STREAM.into(),
            AMQPValue::LongString(LongString::from(self.stream.as_str())),
        );
        if let Some(run) = self.run {
            t.insert(
                RUN.into(),
                AMQPValue::LongString(LongString::from(run.to_string())),
            );
        }
        t
    }

    pub fn from_headers(headers: &FieldTable) -> Result<Self, OutputMetaError> {
        let map = headers.inner();
        let seq = match map.get(SEQ) {
            Some(AMQPValue::LongLongInt(v)) if *v > 0 => *v as u64,
            _ => return Err(OutputMetaError::Missing(SEQ)),
        };
        let stream = match map.get(STREAM) {
            Some(AMQPValue::ShortString(s)) => Stream::parse(s.as_str()),
            Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
                .ok()
                .and_then(Stream::parse),
            _ => None,
        }
        .ok_or(OutputMetaError::Missing(STREAM))?;
        let run = match map.get(RUN) {
            None => None,
            Some(AMQPValue::LongString(s)) => Some(
                std::str::from_utf8(s.as_bytes())
                    .ok()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or(OutputMetaError::Missing(RUN))?,
            ),
            Some(_) => return Err(OutputMetaError::Missing(RUN)),
        };
        Ok(Self { seq, stream, run })
    }
}

/// A WebSocket binary frame: 8-byte big-endian sequence number, then bytes.
pub fn encode_frame(seq: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&seq.to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Splits a binary frame into its sequence number and bytes.
pub fn decode_frame(frame: &[u8]) -> Option<(u64, &[u8])> {
    let (head, data) = frame.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_headers() {
        for meta in [
            OutputMeta {
                seq: 1,
                stream: Stream::Pty,
                run: None,
            },
            OutputMeta {
                seq: u32::MAX as u64 + 7,
                stream: Stream::Stderr,
                run: Some(Uuid::now_v7()),
            },
        ] {
            assert_eq!(OutputMeta::from_headers(&meta.to_headers()), Ok(meta));
        }
    }

    #[test]
    fn meta_without_seq_is_refused() {
        let mut t = FieldTable::default();
        t.insert(STREAM.into(), AMQPValue::ShortString("pty".into()));
        assert_eq!(
            OutputMeta::from_headers(&t),
            Err(OutputMetaError::Missing("seq"))
        );
    }

    #[test]
    fn frames_round_trip() {
        let f = encode_frame(258, b"hi");
        assert_eq!(&f[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(decode_frame(&f), Some((258, &b"hi"[..])));
        assert_eq!(decode_frame(&[1, 2, 3]), None);
    }
}
