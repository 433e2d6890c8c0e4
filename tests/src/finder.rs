//! Searching terminal output for a marker as it streams in.

/// Finds a needle in a stream of pieces, also across piece boundaries,
/// looking at each byte about once: a client waiting for a marker must
/// keep up with output arriving at tens of MB/s, or it falls behind on the
/// server and the test or the benchmark measures the client.
pub struct Finder<'a> {
    needle: &'a [u8],
    /// The last `needle.len() - 1` bytes seen (at most).
    edge: Vec<u8>,
}

impl<'a> Finder<'a> {
    pub fn new(needle: &'a [u8]) -> Self {
        Self {
            needle,
            edge: Vec::with_capacity(2 * needle.len()),
        }
    }

    /// Whether the needle has appeared, counting this piece.
    pub fn push(&mut self, piece: &[u8]) -> bool {
        let keep = self.needle.len().saturating_sub(1);
        // A match across the boundary lies within the old edge plus the
        // piece's first `keep` bytes.
        self.edge.extend_from_slice(&piece[..keep.min(piece.len())]);
        if memchr::memmem::find(&self.edge, self.needle).is_some()
            || memchr::memmem::find(piece, self.needle).is_some()
        {
            return true;
        }
        if piece.len() >= keep {
            self.edge.clear();
            self.edge.extend_from_slice(&piece[piece.len() - keep..]);
        } else {
            let extra = self.edge.len().saturating_sub(keep);
            self.edge.drain(..extra);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::Finder;

    fn found(pieces: &[&[u8]]) -> bool {
        let mut f = Finder::new(b"DONE");
        pieces.iter().any(|p| f.push(p))
    }

    #[test]
    fn the_needle_is_found_inside_and_across_pieces() {
        assert!(found(&[b"..DONE.."]));
        assert!(found(&[b"....DO", b"NE"]));
        assert!(found(&[b"D", b"O", b"N", b"E"]));
        assert!(found(&[b"xxD", b"", b"ON", b"Eyy"]));
    }

    #[test]
    fn no_needle_no_match() {
        assert!(!found(&[b"DON", b"x", b"E"]));
        assert!(!found(&[b"DO", b"NX", b"DONX"]));
        assert!(!found(&[]));
    }
}
