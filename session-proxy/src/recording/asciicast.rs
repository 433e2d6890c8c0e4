//! A recording as asciicast v2 events: terminal output (`o`), resizes
//! (`r`, `COLSxROWS`) and markers (`m`). Exec output of runs is terminal
//! output too (line feeds made CR LF as a PTY would, stderr in red), and
//! each marker is also drawn as a line in the output, so every player
//! shows where a run started and how it ended.

use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeTuple, Serializer};
use serde_json::json;
use shellway_common::Stream;
use uuid::Uuid;

use crate::store::recording_pages::Item;

/// One asciicast event: `[time, code, data]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CastEvent {
    pub(crate) time: f64,
    pub(crate) code: &'static str,
    pub(crate) data: String,
}

impl Serialize for CastEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.time)?;
        t.serialize_element(self.code)?;
        t.serialize_element(&self.data)?;
        t.end()
    }
}

/// The header line's fields.
pub(crate) fn header(
    session: Uuid,
    host: Option<&str>,
    cols: i32,
    rows: i32,
    start: DateTime<Utc>,
) -> serde_json::Value {
    json!({
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": start.timestamp(),
        "title": format!("Shellway session {session} on {}", host.unwrap_or("?")),
        "env": {"TERM": "xterm-256color"},
    })
}

/// Turns items into events. Keeps what must carry over from one item to
/// the next: the last time written (times never go back) and the bytes of
/// a UTF-8 character split across output chunks, per stream.
pub(crate) struct Writer {
    start: DateTime<Utc>,
    last: f64,
    carry: [Vec<u8>; 3],
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Pty => 0,
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    }
}

impl Writer {
    pub(crate) fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            last: 0.0,
            carry: Default::default(),
        }
    }

    /// Starts in the middle of a recording: `tail` ends the output of
    /// `stream` written before (its last bytes are enough).
    pub(crate) fn resume(&mut self, stream: Stream, tail: &[u8]) {
        self.carry[slot(stream)] = incomplete_suffix(tail).to_vec();
    }

    fn time(&mut self, at: DateTime<Utc>) -> f64 {
        let t = (at - self.start).num_microseconds().unwrap_or(0) as f64 / 1e6;
        self.last = self.last.max(t);
        self.last
    }

    /// The events of one item (none for empty output).
    pub(crate) fn events(&mut self, item: Item) -> Vec<CastEvent> {
        match item {
            Item::Output {
                at, stream, data, ..
            } => {
                let time = self.time(at);
                let text = decode(&mut self.carry[slot(stream)], &data);
                if text.is_empty() {
                    return Vec::new();
                }
                let data = match stream {
                    Stream::Pty => text,
                    Stream::Stdout => crlf(&text),
                    Stream::Stderr => format!("\x1b[31m{}\x1b[39m", crlf(&text)),
                };
                vec![CastEvent {
                    time,
                    code: "o",
                    data,
                }]
            }
            Item::Resize { at, cols, rows, .. } => vec![CastEvent {
                time: self.time(at),
                code: "r",
                data: format!("{cols}x{rows}"),
            }],
            Item::Marker { at, label, .. } => {
                let time = self.time(at);
                let line = format!("\r\n\x1b[7m {} \x1b[27m\r\n", printable(&label));
                vec![
                    CastEvent {
                        time,
                        code: "m",
                        data: label,
                    },
                    CastEvent {
                        time,
                        code: "o",
                        data: line,
                    },
                ]
            }
        }
    }

    /// At the end of the recording: bytes of a character that never
    /// completed.
    pub(crate) fn finish(&mut self) -> Vec<CastEvent> {
        let time = self.last;
        self.carry
            .iter_mut()
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.clear();
                CastEvent {
                    time,
                    code: "o",
                    data: "\u{FFFD}".into(),
                }
            })
            .collect()
    }
}

/// The bytes at the end of `bytes` that start a UTF-8 character without
/// finishing it.
fn incomplete_suffix(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(3) {
        let start = bytes.len() - back;
        let b = bytes[start];
        if b & 0xC0 != 0x80 {
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if len > back { &bytes[start..] } else { &[] };
        }
    }
    &[]
}

/// `carry` then `data` as text: invalid bytes become U+FFFD, and the
/// start of a character cut at the end waits in `carry` for the next
/// chunk (asciicast events are JSON strings).
fn decode(carry: &mut Vec<u8>, data: &[u8]) -> String {
    let joined;
    let mut rest: &[u8] = if carry.is_empty() {
        data
    } else {
        joined = [std::mem::take(carry).as_slice(), data].concat();
        &joined
    };
    let mut out = String::with_capacity(rest.len());
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(err) => {
                let (valid, bad) = rest.split_at(err.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match err.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                    None => {
                        carry.extend_from_slice(bad);
                        return out;
                    }
                }
            }
        }
    }
}

/// Exec output has no PTY to turn LF into CR LF.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// A label drawn in the terminal: no control characters of its own.
fn printable(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + chrono::Duration::milliseconds(ms)
    }

    fn output(ms: i64, stream: Stream, data: &[u8]) -> Item {
        Item::Output {
            seq: 1,
            at: at(ms),
            stream,
            data: data.to_vec(),
        }
    }

    #[test]
    fn a_character_split_across_chunks_is_written_whole() {
        let mut w = Writer::new(at(0));
        let euro = "€".as_bytes();
        let first = w.events(output(0, Stream::Pty, &[b'a', euro[0], euro[1]]));
        let second = w.events(output(0, Stream::Pty, &[euro[2], b'b']));
        assert_eq!(first[0].data, "a");
        assert_eq!(second[0].data, "€b");
        assert!(w.finish().is_empty());
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut w = Writer::new(at(0));
        let e = w.events(output(0, Stream::Pty, b"a\xffb\xe2\x82"));
        assert_eq!(e[0].data, "a\u{FFFD}b");
        assert_eq!(w.finish()[0].data, "\u{FFFD}");
    }

    #[test]
    fn a_resumed_writer_completes_the_character_cut_before_it() {
        let euro = "€".as_bytes();
        let mut w = Writer::new(at(0));
        w.resume(Stream::Pty, &[b'x', euro[0]]);
        assert_eq!(w.events(output(0, Stream::Pty, &euro[1..]))[0].data, "€");
        assert_eq!(incomplete_suffix(b"abc"), b"");
        assert_eq!(incomplete_suffix(euro), b"");
        assert_eq!(incomplete_suffix(&euro[..2]), &euro[..2]);
    }

    #[test]
    fn exec_output_gets_cr_lf_and_stderr_is_red() {
        let mut w = Writer::new(at(0));
        let out = w.events(output(0, Stream::Stdout, b"one\ntwo\r\n"));
        assert_eq!(out[0].data, "one\r\ntwo\r\n");
        let err = w.events(output(0, Stream::Stderr, b"bad\n"));
        assert_eq!(err[0].data, "\x1b[31mbad\r\n\x1b[39m");
        assert!(w.events(output(0, Stream::Stderr, b"")).is_empty());
    }

    #[test]
    fn times_are_seconds_from_the_start_and_never_go_back() {
        let mut w = Writer::new(at(1000));
        let a = w.events(output(2500, Stream::Pty, b"a"));
        let b = w.events(output(2000, Stream::Pty, b"b"));
        assert_eq!(a[0].time, 1.5);
        assert_eq!(b[0].time, 1.5);
        let line = serde_json::to_string(&a[0]).unwrap_or_default();
        assert_eq!(line, r#"[1.5,"o","a"]"#);
    }

    #[test]
    fn resizes_and_markers_have_their_asciicast_form() {
        let mut w = Writer::new(at(0));
        let r = w.events(Item::Resize {
            seq: 1,
            id: 1,
            at: at(10),
            cols: 97,
            rows: 30,
        });
        assert_eq!((r[0].code, r[0].data.as_str()), ("r", "97x30"));
        let m = w.events(Item::Marker {
            seq: 1,
            id: 2,
            at: at(20),
            label: "run started: echo \x1b[2J".into(),
        });
        assert_eq!(m[0].code, "m");
        assert_eq!(m[0].data, "run started: echo \x1b[2J");
        assert_eq!(m[1].code, "o");
        assert!(m[1].data.contains("run started: echo  [2J"), "{:?}", m[1]);
    }
}
