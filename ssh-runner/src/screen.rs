//! The terminal emulator kept per PTY session, so a late joiner can be
//! shown the screen as it is (vim, top) instead of a torn tail of bytes.
//!
//! The shell's reader feeds every output batch in, in publish order, while
//! holding the session publisher's lock; a snapshot taken under the same
//! lock therefore matches exactly the output up to the publisher's seq.

use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub(crate) struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
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

impl Screen {
    pub(crate) fn new(cols: u16, rows: u16) -> Self {
        let (rows, cols) = size(rows, cols);
        // No scrollback: the screen is what a joiner needs, and the
        // recording holds the rest. Keeps memory per session small.
        Self {
            parser: Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, vt100::Parser> {
        self.parser.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn feed(&self, bytes: &[u8]) {
        self.lock().process(bytes);
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) {
        let (rows, cols) = size(rows, cols);
        self.lock().set_size(rows, cols);
    }

    pub(crate) fn render(&self) -> Rendered {
        let parser = self.lock();
        let screen = parser.screen();
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
        let text = again.lock().screen().contents();
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
}
