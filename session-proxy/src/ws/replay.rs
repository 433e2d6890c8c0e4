//! A viewer's catching up from the recording in Postgres.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::Sink;
use shellway_common::output::encode_frame;
use shellway_common::Stream as OutStream;
use tokio::time::Instant;

use super::viewer::{Gone, Viewer, FRAME_MAX};
use crate::store::recordings;

/// Terminal output replayed to a viewer who joins without `after`.
const REPLAY_WINDOW: i64 = 256 * 1024;
/// How long a viewer waits for the recorder to catch up with live output.
const CATCH_UP: Duration = Duration::from_secs(3);
/// Rows read from the recording at a time.
const PAGE: i64 = 256;

impl Viewer {
    /// The seq after which a viewer without `after` starts: at most the last
    /// REPLAY_WINDOW bytes of terminal output.
    pub(super) async fn replay_start(&self) -> u64 {
        let first = recordings::tail_start(&self.st.db, self.session, REPLAY_WINDOW).await;
        match first {
            Ok(Some(seq)) => u64::try_from(seq - 1).unwrap_or(0),
            Ok(None) => 0,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the recording");
                0
            }
        }
    }

    /// Whether more than `limit` bytes were recorded after `after`. Reads
    /// only as many rows as it takes to tell.
    pub(super) async fn recorded_beyond(&self, after: u64, limit: usize) -> bool {
        // Output messages are at most a few tens of KiB: this many rows
        // cover any limit worth having.
        let rows = (limit / 1024).clamp(64, 8192) as i64;
        let total = recordings::bytes_after(&self.st.db, self.session, after as i64, rows).await;
        match total {
            Ok(total) => total.unwrap_or(0) as usize > limit,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the recording");
                false
            }
        }
    }

    /// Waits (briefly) until the recorder has every chunk up to `upto`.
    pub(super) async fn catch_up(&self, upto: u64) {
        let deadline = Instant::now() + CATCH_UP;
        let want = upto.saturating_sub(self.last_sent) as i64;
        while Instant::now() < deadline {
            let (from, upto) = (self.last_sent as i64, upto as i64);
            let have = recordings::count_between(&self.st.db, self.session, from, upto).await;
            if have.is_ok_and(|n| n >= want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(session_id = %self.session, from = self.last_sent, upto, "recording incomplete; the viewer skips ahead");
    }

    /// Sends recorded output after `last_sent`, up to `upto` if given.
    pub(super) async fn replay<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        upto: Option<u64>,
    ) -> Result<(), Gone> {
        let upto = upto.map_or(i64::MAX, |u| u as i64);
        loop {
            let from = self.last_sent as i64;
            let rows = match recordings::chunks(&self.st.db, self.session, from, upto, PAGE).await {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the recording");
                    return Ok(());
                }
            };
            let full = rows.len() as i64 == PAGE;
            let mut frame: Vec<u8> = Vec::new();
            let mut frame_seq = 0u64;
            for (seq, stream, run, data) in rows {
                let seq = seq as u64;
                let stream = OutStream::parse(&stream).unwrap_or(OutStream::Pty);
                if stream == OutStream::Pty {
                    frame.extend_from_slice(&data);
                    frame_seq = seq;
                    if frame.len() >= FRAME_MAX {
                        self.flush(sink, &mut frame, frame_seq).await?;
                    }
                } else {
                    self.flush(sink, &mut frame, frame_seq).await?;
                    self.send_chunk(sink, seq, stream, run, &data).await?;
                }
            }
            self.flush(sink, &mut frame, frame_seq).await?;
            if !full {
                return Ok(());
            }
        }
    }

    async fn flush<Si: Sink<Message, Error = E> + Unpin, E>(
        &mut self,
        sink: &mut Si,
        frame: &mut Vec<u8>,
        seq: u64,
    ) -> Result<(), Gone> {
        if frame.is_empty() {
            return Ok(());
        }
        self.send(sink, Message::Binary(encode_frame(seq, frame).into()))
            .await?;
        self.window.sent(seq, frame.len());
        frame.clear();
        self.last_sent = seq;
        Ok(())
    }
}
