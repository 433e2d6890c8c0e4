//! Reading an SSH channel as output messages: whatever is immediately
//! available is coalesced into one message (up to [`COALESCE_LIMIT`]), so a
//! flood of small writes becomes a few large messages while a lone
//! keystroke echo goes out at once, with no timer in the way.

use bytes::Bytes;
use futures_util::FutureExt;
use russh::{ChannelMsg, ChannelReadHalf};
use shellway_common::Stream;

/// Most bytes gathered into one output message (one more SSH packet may
/// overshoot it).
pub(crate) const COALESCE_LIMIT: usize = 32 * 1024;

/// Whether a channel is the interactive PTY or an exec run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    Pty,
    Exec,
}

/// One message of a channel, sorted: output bytes or anything else.
#[derive(Debug)]
pub(crate) enum Piece {
    Output(Stream, Bytes),
    Other(ChannelMsg),
}

impl ChannelKind {
    fn classify(self, msg: ChannelMsg) -> Piece {
        match (self, msg) {
            (Self::Pty, ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. }) => {
                Piece::Output(Stream::Pty, data)
            }
            (Self::Exec, ChannelMsg::Data { data }) => Piece::Output(Stream::Stdout, data),
            (Self::Exec, ChannelMsg::ExtendedData { data, ext: 1 }) => {
                Piece::Output(Stream::Stderr, data)
            }
            (_, other) => Piece::Other(other),
        }
    }
}

/// Bytes of one stream, gathered into one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) stream: Stream,
    pub(crate) data: Vec<u8>,
}

/// Gathers `first` and the pieces `ready` yields right now into one batch.
/// Stops at the limit, at a piece of another stream or kind (returned, to
/// come next), or when nothing more is ready.
pub(crate) fn gather(
    stream: Stream,
    first: &[u8],
    mut ready: impl FnMut() -> Option<Piece>,
) -> (Batch, Option<Piece>) {
    let mut data = Vec::with_capacity(first.len());
    data.extend_from_slice(first);
    while data.len() < COALESCE_LIMIT {
        match ready() {
            Some(Piece::Output(s, bytes)) if s == stream => data.extend_from_slice(&bytes),
            Some(other) => return (Batch { stream, data }, Some(other)),
            None => break,
        }
    }
    (Batch { stream, data }, None)
}

/// What reading a channel gave.
#[derive(Debug)]
pub(crate) enum Next {
    Output(Batch),
    Msg(ChannelMsg),
    /// The channel is gone.
    End,
}

/// Reads a channel as coalesced output and other messages. `next` is
/// cancel-safe: its only await point is the channel receive.
pub(crate) struct ChannelReader {
    read: ChannelReadHalf,
    kind: ChannelKind,
    stash: Option<Piece>,
}

impl ChannelReader {
    pub(crate) fn new(read: ChannelReadHalf, kind: ChannelKind) -> Self {
        Self {
            read,
            kind,
            stash: None,
        }
    }

    pub(crate) async fn next(&mut self) -> Next {
        let first = match self.stash.take() {
            Some(piece) => piece,
            None => match self.read.wait().await {
                Some(msg) => self.kind.classify(msg),
                None => return Next::End,
            },
        };
        let (stream, bytes) = match first {
            Piece::Other(msg) => return Next::Msg(msg),
            Piece::Output(stream, bytes) => (stream, bytes),
        };
        let (kind, read) = (self.kind, &mut self.read);
        let (batch, rest) = gather(stream, &bytes, || ready_now(read, kind));
        self.stash = rest;
        Next::Output(batch)
    }

    /// Adds what is ready now of the same stream to `batch` (up to the
    /// limit), without waiting.
    pub(crate) fn top_up(&mut self, batch: &mut Batch) {
        if self.stash.is_some() {
            return;
        }
        let (kind, read) = (self.kind, &mut self.read);
        let (more, rest) = gather(batch.stream, &[], || ready_now(read, kind));
        batch.data.extend_from_slice(&more.data);
        self.stash = rest;
    }
}

/// The channel's next message if it is there already. `Some(None)` (the
/// channel ended) counts as "nothing ready": the next read sees the end.
fn ready_now(read: &mut ChannelReadHalf, kind: ChannelKind) -> Option<Piece> {
    read.wait()
        .now_or_never()
        .flatten()
        .map(|m| kind.classify(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stream: Stream, s: &str) -> Piece {
        Piece::Output(stream, Bytes::copy_from_slice(s.as_bytes()))
    }

    fn feed(pieces: Vec<Piece>) -> impl FnMut() -> Option<Piece> {
        let mut it = pieces.into_iter();
        move || it.next()
    }

    #[test]
    fn a_lone_keystroke_goes_out_alone() {
        let (batch, rest) = gather(Stream::Pty, b"a", feed(vec![]));
        assert_eq!(batch.data, b"a");
        assert!(rest.is_none());
    }

    #[test]
    fn ready_output_of_one_stream_is_joined() {
        let ready = vec![out(Stream::Pty, "b"), out(Stream::Pty, "c")];
        let (batch, rest) = gather(Stream::Pty, b"a", feed(ready));
        assert_eq!(
            batch,
            Batch {
                stream: Stream::Pty,
                data: b"abc".to_vec()
            }
        );
        assert!(rest.is_none());
    }

    #[test]
    fn another_stream_or_message_ends_the_batch_and_comes_next() {
        let ready = vec![
            out(Stream::Stdout, "1"),
            out(Stream::Stderr, "2"),
            out(Stream::Stdout, "3"),
        ];
        let (batch, rest) = gather(Stream::Stdout, b"0", feed(ready));
        assert_eq!(batch.data, b"01");
        assert!(matches!(rest, Some(Piece::Output(Stream::Stderr, _))));

        let ready = vec![Piece::Other(ChannelMsg::Eof), out(Stream::Stdout, "x")];
        let (batch, rest) = gather(Stream::Stdout, b"0", feed(ready));
        assert_eq!(batch.data, b"0");
        assert!(matches!(rest, Some(Piece::Other(ChannelMsg::Eof))));
    }

    #[test]
    fn a_flood_is_cut_at_the_limit() {
        let chunk = "x".repeat(1000);
        let ready: Vec<Piece> = (0..100).map(|_| out(Stream::Pty, &chunk)).collect();
        let mut ready = feed(ready);
        let (batch, rest) = gather(Stream::Pty, b"", &mut ready);
        assert!(rest.is_none());
        assert!(batch.data.len() >= COALESCE_LIMIT && batch.data.len() < COALESCE_LIMIT + 1000);
        // What was not taken is still there for the next batch.
        assert!(ready().is_some());
    }

    #[test]
    fn exec_channels_keep_stdout_and_stderr_apart() {
        let data = Bytes::from_static(b"e");
        let p = ChannelKind::Exec.classify(ChannelMsg::ExtendedData {
            data: data.clone(),
            ext: 1,
        });
        assert!(matches!(p, Piece::Output(Stream::Stderr, _)));
        let p = ChannelKind::Pty.classify(ChannelMsg::ExtendedData { data, ext: 1 });
        assert!(matches!(p, Piece::Output(Stream::Pty, _)));
    }
}
