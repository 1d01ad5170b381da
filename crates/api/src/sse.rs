//! Server-sent event lines, read as the pieces of a stream arrive wherever the
//! pieces split them. One reader serves the gateway's usage reading and the
//! OpenAI ↔ Anthropic stream translator.
//!
//! Linear and bounded: complete lines are handed over where they lie in the
//! piece (only an unfinished line is copied, once), and a line longer than
//! [`MAX_EVENT_LINE`] — longer than any event — is skipped to its end instead
//! of being buffered.

/// The longest event line kept while its end has not arrived.
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// The `data:` lines of an event stream.
#[derive(Debug, Default)]
pub struct DataLines {
    /// The start of a line the next piece finishes.
    pending: Vec<u8>,
    /// The line being received is longer than any event: skipped to its end.
    overlong: bool,
}

impl DataLines {
    /// Calls `data` with the payload (trimmed, after `data:`) of every `data:`
    /// line that `piece` completes.
    pub fn feed(&mut self, piece: &[u8], mut data: impl FnMut(&[u8])) {
        let mut rest = piece;
        if !self.pending.is_empty() || self.overlong {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.keep(rest);
                return;
            };
            if !self.overlong {
                self.pending.extend_from_slice(&rest[..end]);
                if self.pending.len() <= MAX_EVENT_LINE {
                    data_of(&self.pending, &mut data);
                }
            }
            self.pending.clear();
            self.overlong = false;
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            data_of(&rest[..end], &mut data);
            rest = &rest[end + 1..];
        }
        self.keep(rest);
    }

    /// Whether no unfinished line is held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Keeps the start of an unfinished line, unless it grows longer than
    /// any event.
    fn keep(&mut self, part: &[u8]) {
        if self.overlong || part.is_empty() {
            return;
        }
        if self.pending.len() + part.len() > MAX_EVENT_LINE {
            self.pending = Vec::new();
            self.overlong = true;
        } else {
            self.pending.extend_from_slice(part);
        }
    }
}

/// The payload of a `data:` line; other lines (events, comments) carry none.
fn data_of(line: &[u8], data: &mut impl FnMut(&[u8])) {
    if let Some(payload) = line.trim_ascii().strip_prefix(b"data:") {
        data(payload.trim_ascii());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(pieces: &[&[u8]]) -> Vec<String> {
        let mut lines = DataLines::default();
        let mut seen = Vec::new();
        for piece in pieces {
            lines.feed(piece, |d| {
                seen.push(String::from_utf8_lossy(d).into_owned())
            });
        }
        seen
    }

    #[test]
    fn data_lines_are_found_however_the_stream_is_cut() {
        let stream = b"event: a\ndata: {\"x\":1}\r\n\r\n: comment\ndata:[DONE]\n";
        let whole = all(&[stream]);
        assert_eq!(whole, ["{\"x\":1}", "[DONE]"]);
        for cut in 0..stream.len() {
            assert_eq!(
                all(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn an_overlong_line_is_skipped_to_its_end_and_not_kept() {
        let mut lines = DataLines::default();
        let mut seen = Vec::new();
        let mut long = b"data: ".to_vec();
        long.extend(vec![b'x'; MAX_EVENT_LINE]);
        lines.feed(&long, |d| seen.push(d.len()));
        assert!(lines.is_empty());
        lines.feed(b"still the long line\ndata: ok\n", |d| seen.push(d.len()));
        assert_eq!(seen, [2]);
    }
}
