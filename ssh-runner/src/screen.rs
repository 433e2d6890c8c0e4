//! The terminal emulator kept per PTY session, so a late joiner can be
//! shown the screen as it is (vim, top) instead of a torn tail of bytes.
//!
//! The shell's reader feeds every output batch in, in publish order, while
//! holding the session publisher's lock; a snapshot taken under the same
//! lock therefore matches exactly the output up to the publisher's seq.
//!
//! Emulating every byte is most of the runner's CPU when a shell streams
//! text (`cat`, logs, `base64`). A run of plain text (printable ASCII,
//! CR, LF, tab, backspace) that goes on for more than two screens after a
//! CR LF cannot leave anything of its beginning on the screen, as long as
//! the scroll region is the whole screen: so only its last screens are
//! emulated. Plain text is held back until something else arrives or the
//! screen is read, and the scroll region is tracked per grid from the
//! escape sequences seen.

use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub(crate) struct Screen {
    inner: Arc<Mutex<Inner>>,
}

/// Rendered screen: output bytes that paint it on a blank terminal.
pub(crate) struct Rendered {
    pub(crate) cols: u16,
    pub(crate) rows: u16,
    pub(crate) data: String,
}

fn size(rows: u16, cols: u16) -> (NonZeroU16, NonZeroU16) {
    let one = NonZeroU16::MIN;
    (
        NonZeroU16::new(rows).unwrap_or(one),
        NonZeroU16::new(cols).unwrap_or(one),
    )
}

/// Plain text held back is trimmed (or, where it cannot be, emulated)
/// each time this much more has come in.
const TRIM_AT: usize = 32 * 1024;

struct Inner {
    parser: vt100::Parser,
    scan: Scan,
    /// Whether the main / alternate grid may have a scroll region.
    region: [bool; 2],
    /// Plain text not emulated yet.
    pending: Vec<u8>,
    /// The front of `pending` was dropped: emulation resumes with a CR.
    trimmed: bool,
    /// Length of `pending` after the last trim: the next is tried only
    /// once TRIM_AT more has come, so each byte is looked at a bounded
    /// number of times.
    kept: usize,
}

impl Screen {
    pub(crate) fn new(cols: u16, rows: u16) -> Self {
        let (rows, cols) = size(rows, cols);
        // No scrollback: the screen is what a joiner needs, and the
        // recording holds the rest. Keeps memory per session small.
        Self {
            inner: Arc::new(Mutex::new(Inner {
                parser: vt100::Parser::new(rows, cols, 0),
                scan: Scan::default(),
                region: [false; 2],
                pending: Vec::new(),
                trimmed: false,
                kept: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn feed(&self, bytes: &[u8]) {
        self.lock().feed(bytes);
    }

    /// Resizes the screen; false when it had that size already.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> bool {
        let (rows, cols) = size(rows, cols);
        let mut inner = self.lock();
        if inner.parser.screen().size() == (rows, cols) {
            return false;
        }
        inner.flush();
        inner.parser.set_size(rows, cols);
        true
    }

    pub(crate) fn render(&self) -> Rendered {
        let mut inner = self.lock();
        inner.flush();
        let screen = inner.parser.screen();
        let (rows, cols) = screen.size();
        let mut data = String::new();
        // Full-screen programs draw on the alternate screen; the joiner's
        // terminal must be on it too, or its scrollback gets the picture.
        if screen.alternate_screen() {
            data.push_str("\x1b[?1049h");
        }
        data.push_str(&screen.state_formatted());
        Rendered {
            cols: cols.get(),
            rows: rows.get(),
            data,
        }
    }
}

impl Inner {
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.scan.state == State::Ground {
                let run = bytes[i..]
                    .iter()
                    .position(|&b| !is_plain(b))
                    .unwrap_or(bytes.len() - i);
                if run > 0 {
                    self.hold(&bytes[i..i + run]);
                    i += run;
                    continue;
                }
            }
            self.flush();
            // Emulate up to the next plain text, stopping after each
            // sequence that changes what the fast path relies on.
            let mut from = i;
            while i < bytes.len() && !(self.scan.state == State::Ground && is_plain(bytes[i])) {
                let seen = self.scan.step(bytes[i]);
                i += 1;
                if let Some(seen) = seen {
                    self.parser.process(&bytes[from..i]);
                    from = i;
                    self.note(seen);
                }
            }
            self.parser.process(&bytes[from..i]);
        }
    }

    fn note(&mut self, seen: Seen) {
        match seen {
            Seen::Reset => self.region = [false; 2],
            Seen::ScrollRegion { top, bottom } => {
                let rows = self.parser.screen().size().0.get();
                let whole = top <= 1 && (bottom == 0 || bottom >= rows);
                let grid = usize::from(self.parser.screen().alternate_screen());
                self.region[grid] = !whole;
            }
        }
    }

    /// Holds plain text back, dropping what can no longer be on screen;
    /// where nothing can be dropped, emulates it.
    fn hold(&mut self, text: &[u8]) {
        self.pending.extend_from_slice(text);
        if self.pending.len() < self.kept + TRIM_AT {
            return;
        }
        let screen = self.parser.screen();
        let rows = usize::from(screen.size().0.get());
        let grid = usize::from(screen.alternate_screen());
        let cut = (rows >= 4 && !self.region[grid])
            .then(|| cut_point(&self.pending, 2 * rows))
            .flatten();
        match cut {
            Some(cut) => {
                self.pending.drain(..cut);
                self.trimmed = true;
                self.kept = self.pending.len();
            }
            None => self.flush(),
        }
    }

    /// Emulates the plain text held back.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.trimmed {
            // Where the kept text starts, the full text had just had a CR LF.
            self.parser.process(b"\r");
            self.trimmed = false;
        }
        self.parser.process(&self.pending);
        self.pending.clear();
        self.kept = 0;
        if self.pending.capacity() > 16 * 1024 {
            self.pending = Vec::new(); // an idle session keeps no big buffer
        }
    }
}

fn is_plain(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | b'\r' | b'\n' | b'\t' | 0x08)
}

/// The latest position just after a CR LF that is followed by at least
/// `lfs` line feeds: what comes before it is scrolled off the screen.
fn cut_point(text: &[u8], lfs: usize) -> Option<usize> {
    let mut seen = 0;
    let mut i = text.len();
    while i > 0 {
        i -= 1;
        if text[i] != b'\n' {
            continue;
        }
        if seen >= lfs && i > 0 && text[i - 1] == b'\r' {
            return Some(i + 1);
        }
        seen += 1;
    }
    None
}

/// Just enough of the escape-sequence grammar (after vte, which vt100
/// uses) to know when the parser is in its ground state and to see the
/// sequences that set a scroll region or reset the terminal.
#[derive(Default)]
struct Scan {
    state: State,
    /// Parameter bytes of the CSI sequence being read (only kept short).
    params: Vec<u8>,
    private: bool,
    intermediate: bool,
}

#[derive(Default, PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    #[default]
    Ground,
    Escape,
    EscapeIntermediate,
    Csi,
    Osc,
    /// DCS, SOS, PM, APC: ended by ST.
    String,
}

enum Seen {
    Reset,
    ScrollRegion { top: u16, bottom: u16 },
}

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const BEL: u8 = 0x07;

impl Scan {
    fn step(&mut self, b: u8) -> Option<Seen> {
        match (self.state, b) {
            (_, ESC) => self.state = State::Escape,
            (_, CAN | SUB) => self.state = State::Ground,
            (State::Ground, _) => {}
            (State::Escape, b'[') => {
                self.state = State::Csi;
                self.params.clear();
                self.private = false;
                self.intermediate = false;
            }
            (State::Escape, b']') => self.state = State::Osc,
            (State::Escape, b'P' | b'X' | b'^' | b'_') => self.state = State::String,
            (State::Escape | State::EscapeIntermediate, 0x20..=0x2f) => {
                self.state = State::EscapeIntermediate;
            }
            (State::Escape, b'c') => {
                self.state = State::Ground;
                return Some(Seen::Reset);
            }
            (State::Escape | State::EscapeIntermediate, 0x30..=0x7e) => {
                self.state = State::Ground;
            }
            (State::Csi, 0x30..=0x3f) => {
                if matches!(b, b'<'..=b'?') {
                    self.private = true;
                }
                if self.params.len() < 32 {
                    self.params.push(b);
                }
            }
            (State::Csi, 0x20..=0x2f) => self.intermediate = true,
            (State::Csi, 0x40..=0x7e) => {
                self.state = State::Ground;
                if b == b'r' && !self.private && !self.intermediate {
                    let mut nums = self.params.split(|&c| c == b';').map(|p| {
                        std::str::from_utf8(p)
                            .ok()
                            .and_then(|p| p.parse::<u16>().ok())
                            .unwrap_or(0)
                    });
                    let top = nums.next().unwrap_or(0);
                    let bottom = nums.next().unwrap_or(0);
                    return Some(Seen::ScrollRegion { top, bottom });
                }
            }
            (State::Osc, BEL) => self.state = State::Ground,
            // Controls inside sequences are executed without leaving them;
            // other bytes are parameters or string contents.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_screen_repaints_the_same_text() {
        let screen = Screen::new(40, 5);
        screen.feed(b"hello\r\n\x1b[31mred\x1b[m world");
        let shown = screen.render();
        assert_eq!((shown.cols, shown.rows), (40, 5));
        let again = Screen::new(40, 5);
        again.feed(shown.data.as_bytes());
        let text = again.lock().parser.screen().contents();
        assert_eq!(text, "hello\nred world");
    }

    #[test]
    fn full_screen_programs_are_rendered_on_the_alternate_screen() {
        let screen = Screen::new(20, 3);
        screen.feed(b"prompt$ \x1b[?1049h\x1b[Hfile text");
        let shown = screen.render();
        assert!(shown.data.starts_with("\x1b[?1049h"), "{:?}", shown.data);
        assert!(shown.data.contains("file text"));
        assert!(!shown.data.contains("prompt"));
    }

    #[test]
    fn resizing_changes_the_rendered_size() {
        let screen = Screen::new(80, 24);
        screen.resize(120, 40);
        let shown = screen.render();
        assert_eq!((shown.cols, shown.rows), (120, 40));
        let zero = Screen::new(0, 0);
        assert_eq!((zero.render().cols, zero.render().rows), (1, 1));
    }

    /// A small deterministic generator (xorshift), so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Terminal output of many kinds: long plain runs (the fast path),
    /// escapes of every family the fast path must see through, scroll
    /// regions, the alternate screen, resets, UTF-8 and invalid bytes.
    fn stream(rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rng.below(40) + 5 {
            let piece: Vec<u8> = match rng.below(20) {
                0..=3 => {
                    let mut t = Vec::new();
                    for _ in 0..rng.below(900) + 20 {
                        for _ in 0..rng.below(160) {
                            t.push(b' ' + rng.below(95) as u8);
                        }
                        t.extend_from_slice(if rng.below(10) == 0 { b"\n" } else { b"\r\n" });
                    }
                    t
                }
                4 => format!("\x1b[{}m", [0, 1, 31, 44, 7][rng.below(5) as usize]).into(),
                5 => format!("\x1b[{};{}H", rng.below(40), rng.below(130)).into(),
                6 => match rng.below(3) {
                    0 => b"\x1b[r".to_vec(),
                    _ => format!("\x1b[{};{}r", rng.below(30), rng.below(35)).into(),
                },
                7 => [
                    &b"\x1b[?1049h"[..],
                    b"\x1b[?1049l",
                    b"\x1b[?47h",
                    b"\x1b[?47l",
                ][rng.below(4) as usize]
                    .to_vec(),
                8 => b"\x1b]0;a title; with\rstuff\x07\x1b]2;x\x1b\\".to_vec(),
                9 => b"\x1bc".to_vec(),
                10 => [
                    &b"\x1b[4h"[..],
                    b"\x1b[4l",
                    b"\x1b[?7l",
                    b"\x1b[?7h",
                    b"\x1b[?6h",
                    b"\x1b[?6l",
                ][rng.below(6) as usize]
                    .to_vec(),
                11 => "h\u{e9}llo \u{6f22}\u{5b57} \u{2713}\r\n"
                    .as_bytes()
                    .to_vec(),
                12 => [
                    &b"\x1b[2J"[..],
                    b"\x1b[K",
                    b"\x1bM",
                    b"\x1bD",
                    b"\x1bE",
                    b"\x0b\x0c",
                ][rng.below(6) as usize]
                    .to_vec(),
                13 => b"a\tb\x08c\rd".to_vec(),
                14 => b"\x1bP1$rxyz\x1b\\\x1b(0lqk\x1b(B".to_vec(),
                15 => [&b"\x9b31m"[..], b"\xc2\x9b1m", b"\xe6", b"\x07"][rng.below(4) as usize]
                    .to_vec(),
                16 => vec![b'w'; rng.below(6000) as usize],
                // Raw-mode output: bare line feeds, so each line starts
                // where the last one ended.
                17 => {
                    let mut t = b"\r\n".to_vec();
                    for _ in 0..rng.below(1500) + 1200 {
                        t.extend(std::iter::repeat_n(b'r', rng.below(60) as usize));
                        t.push(b'\n');
                    }
                    t
                }
                // The cursor below a scroll region: line feeds do not
                // scroll, the last row is written over and over.
                18 => {
                    let mut t = b"\x1b[1;2r\x1b[99;1H".to_vec();
                    for i in 0..rng.below(1500) + 1200 {
                        let c = b'a' + (i % 26) as u8;
                        t.extend(std::iter::repeat_n(c, rng.below(60) as usize));
                        t.extend_from_slice(b"\r\n");
                    }
                    t
                }
                _ => format!("\x1b[{}S\x1b[{}L", rng.below(5), rng.below(5)).into(),
            };
            out.extend_from_slice(&piece);
        }
        out
    }

    #[test]
    fn skipping_scrolled_off_text_leaves_the_same_screen_as_emulating_all_of_it() {
        let mut rng = Rng(0x5eed_1234_abcd_9876);
        let mut trimmed = 0;
        for case in 0..120 {
            let (cols, rows) = (rng.below(120) as u16 + 10, rng.below(28) as u16 + 3);
            let ours = Screen::new(cols, rows);
            let mut reference = vt100::Parser::new(size(rows, cols).0, size(rows, cols).1, 0);
            let data = stream(&mut rng);
            let mut at = 0;
            while at < data.len() {
                let n = (rng.below(8192) as usize + 1).min(data.len() - at);
                ours.feed(&data[at..at + n]);
                reference.process(&data[at..at + n]);
                at += n;
                trimmed += usize::from(ours.lock().trimmed);
                match rng.below(40) {
                    0 => {
                        let (c, r) = (rng.below(100) as u16 + 10, rng.below(30) as u16 + 3);
                        ours.resize(c, r);
                        let (r, c) = size(r, c);
                        reference.set_size(r, c);
                    }
                    1 => {
                        ours.render();
                    }
                    _ => {}
                }
            }
            let shown = ours.render();
            let (want, got) = (reference.screen(), &ours.lock().parser);
            assert_eq!(
                got.screen().contents_formatted(),
                want.contents_formatted(),
                "case {case}: screen differs"
            );
            assert!(
                shown.data.ends_with(&want.state_formatted()),
                "case {case}: rendered state differs"
            );
            assert_eq!(
                got.screen().cursor_position(),
                want.cursor_position(),
                "case {case}"
            );
        }
        assert!(trimmed > 50, "the fast path was taken only {trimmed} times");
    }
}
