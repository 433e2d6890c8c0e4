//! Reads a recording back in bounded pages: output chunks and recording
//! events (resizes, markers) merged in their order, by keyset pagination.
//! Each page is a few short queries on a pooled connection, so a reader
//! holds no transaction and no snapshot between pages, and memory is one
//! page whatever the size of the recording.

use chrono::{DateTime, Utc};
use shellway_common::Stream;
use sqlx::PgPool;
use uuid::Uuid;

/// Output rows one page reads at most.
const OUTPUT_ROWS: usize = 128;

/// A position in a recording: after output `seq` and after the recording
/// events that follow it up to `id` (0: none of them). Written `seq.id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cursor {
    pub(crate) seq: i64,
    pub(crate) id: i64,
}

impl Cursor {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (seq, id) = s.split_once('.')?;
        let cursor = Self {
            seq: seq.parse().ok()?,
            id: id.parse().ok()?,
        };
        (cursor.seq >= 0 && cursor.id >= 0).then_some(cursor)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.seq, self.id)
    }
}

/// One thing a recording holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Output {
        seq: i64,
        at: DateTime<Utc>,
        stream: Stream,
        data: Vec<u8>,
    },
    Resize {
        seq: i64,
        id: i64,
        at: DateTime<Utc>,
        cols: i32,
        rows: i32,
    },
    Marker {
        seq: i64,
        id: i64,
        at: DateTime<Utc>,
        label: String,
    },
}

impl Item {
    /// The position just after this item.
    pub(crate) fn cursor(&self) -> Cursor {
        match self {
            Self::Output { seq, .. } => Cursor { seq: *seq, id: 0 },
            Self::Resize { seq, id, .. } | Self::Marker { seq, id, .. } => {
                Cursor { seq: *seq, id: *id }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Items in a page (at least 1).
    pub(crate) items: usize,
    /// Output bytes in a page; the chunk that reaches it is the last.
    pub(crate) bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) items: Vec<Item>,
    /// Where the next page starts.
    pub(crate) next: Cursor,
    /// Nothing more is recorded after this page (yet, for a live session).
    pub(crate) done: bool,
}

/// The items after `after`, in order, within `limits`.
pub(crate) async fn page(
    db: &PgPool,
    session: Uuid,
    after: Cursor,
    limits: Limits,
) -> Result<Page, sqlx::Error> {
    let items = limits.items.max(1);
    let (outputs, outputs_cut) = outputs(db, session, after.seq, items, limits.bytes).await?;
    // Events after the last output read belong to a later page, unless
    // the output is exhausted.
    let upper = match outputs.last() {
        Some(last) if outputs_cut => last.cursor().seq,
        _ => i64::MAX,
    };
    let events = events(db, session, after, upper, items).await?;
    let events_cut = events.len() >= items;
    Ok(merge(
        outputs,
        outputs_cut,
        events,
        events_cut,
        after,
        items,
    ))
}

/// Output chunks after `after_seq`, up to `max_bytes` (the chunk that
/// reaches it is the last); true when more may follow. The byte limit is
/// applied by the database (`length` reads no compressed data), so it
/// never sends rows the page would not use.
async fn outputs(
    db: &PgPool,
    session: Uuid,
    after_seq: i64,
    items: usize,
    max_bytes: usize,
) -> Result<(Vec<Item>, bool), sqlx::Error> {
    let limit = items.min(OUTPUT_ROWS);
    let rows: Vec<(i64, DateTime<Utc>, String, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, at, stream, data FROM ( \
           SELECT seq, at, stream, data, sum(length(data)) OVER (ORDER BY seq) - length(data) AS before \
           FROM output_chunks WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) page \
         WHERE before < $4 ORDER BY seq",
    )
    .bind(session)
    .bind(after_seq)
    .bind(limit as i64)
    .bind(max_bytes as i64)
    .fetch_all(db)
    .await?;
    let bytes: usize = rows.iter().map(|r| r.3.len()).sum();
    let cut = rows.len() >= limit || bytes >= max_bytes;
    let items = rows
        .into_iter()
        .map(|(seq, at, stream, data)| Item::Output {
            seq,
            at,
            stream: Stream::parse(&stream).unwrap_or(Stream::Pty),
            data,
        })
        .collect();
    Ok((items, cut))
}

/// Recording events after `after` that follow output `upper` at the latest.
async fn events(
    db: &PgPool,
    session: Uuid,
    after: Cursor,
    upper: i64,
    limit: usize,
) -> Result<Vec<Item>, sqlx::Error> {
    type Row = (
        i64,
        i64,
        DateTime<Utc>,
        String,
        Option<i32>,
        Option<i32>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, seq, at, kind, cols, rows, label FROM recording_events \
         WHERE session_id = $1 AND (seq, id) > ($2, $3) AND seq <= $4 \
         ORDER BY seq, id LIMIT $5",
    )
    .bind(session)
    .bind(after.seq)
    .bind(after.id)
    .bind(upper)
    .bind(limit as i64)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, seq, at, kind, cols, rows, label)| match kind.as_str() {
                "resize" => Item::Resize {
                    seq,
                    id,
                    at,
                    cols: cols.unwrap_or(0),
                    rows: rows.unwrap_or(0),
                },
                _ => Item::Marker {
                    seq,
                    id,
                    at,
                    label: label.unwrap_or_default(),
                },
            },
        )
        .collect())
}

/// Merges the two ordered lists into one page. When a list was cut, the
/// page ends where it was cut: the other list's later items may have
/// unread neighbours.
fn merge(
    outputs: Vec<Item>,
    outputs_cut: bool,
    events: Vec<Item>,
    events_cut: bool,
    after: Cursor,
    max: usize,
) -> Page {
    let bound = events_cut
        .then(|| events.last().map(Item::cursor))
        .flatten();
    let mut outputs = outputs.into_iter().peekable();
    let mut events = events.into_iter().peekable();
    let mut items = Vec::new();
    let mut rest = false;
    loop {
        let take_output = match (outputs.peek(), events.peek()) {
            (Some(o), Some(e)) => o.cursor() < e.cursor(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_output {
            outputs.peek()
        } else {
            events.peek()
        };
        let beyond = next.is_some_and(|i| bound.is_some_and(|b| i.cursor() > b));
        if items.len() >= max || beyond {
            rest = true;
            break;
        }
        let item = if take_output {
            outputs.next()
        } else {
            events.next()
        };
        items.extend(item);
    }
    let next = items.last().map_or(after, Item::cursor);
    Page {
        items,
        next,
        done: !rest && !outputs_cut && !events_cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(seq: i64) -> Item {
        Item::Output {
            seq,
            at: DateTime::UNIX_EPOCH,
            stream: Stream::Pty,
            data: vec![b'x'],
        }
    }

    fn resize(seq: i64, id: i64) -> Item {
        Item::Resize {
            seq,
            id,
            at: DateTime::UNIX_EPOCH,
            cols: 80,
            rows: 24,
        }
    }

    fn cursors(page: &Page) -> Vec<String> {
        page.items.iter().map(|i| i.cursor().to_string()).collect()
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor { seq: 12, id: 3 };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "12", "a.b", "-1.0", "1.-2", "1.2.3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_event_follows_the_output_it_names_and_precedes_the_next() {
        let page = merge(
            vec![out(1), out(2), out(3)],
            false,
            vec![resize(0, 7), resize(2, 5), resize(2, 9)],
            false,
            Cursor::default(),
            100,
        );
        assert_eq!(cursors(&page), ["0.7", "1.0", "2.0", "2.5", "2.9", "3.0"]);
        assert!(page.done);
        assert_eq!(page.next, Cursor { seq: 3, id: 0 });
    }

    #[test]
    fn a_cut_event_list_ends_the_page_at_its_last_event() {
        // Output 3 may have unread events before it (seq 2, id > 5).
        let page = merge(
            vec![out(1), out(2), out(3)],
            false,
            vec![resize(1, 4), resize(2, 5)],
            true,
            Cursor::default(),
            100,
        );
        assert_eq!(cursors(&page), ["1.0", "1.4", "2.0", "2.5"]);
        assert!(!page.done);
    }

    #[test]
    fn the_item_limit_ends_a_page_and_the_next_starts_after_it() {
        let page = merge(
            vec![out(5), out(6)],
            false,
            vec![resize(5, 1)],
            false,
            Cursor { seq: 4, id: 0 },
            2,
        );
        assert_eq!(cursors(&page), ["5.0", "5.1"]);
        assert!(!page.done);
        assert_eq!(page.next.to_string(), "5.1");
        let empty = merge(vec![], false, vec![], false, Cursor { seq: 9, id: 2 }, 2);
        assert!(empty.done);
        assert_eq!(empty.next, Cursor { seq: 9, id: 2 });
    }
}
