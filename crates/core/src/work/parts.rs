//! Long texts in parts: the store holds at most `MAX_VALUE_SIZE` (100 000)
//! bytes a value, and a message or a system prompt holds up to
//! [`MAX_CONTENT_BYTES`] (256 KiB) — more again as JSON, with its escapes.
//! So a record keeps a text's first part and the rest follow as
//! [`TextPart`]s under a range of their own, written in the record's
//! transaction and read back with it.

use gatehouse_storage::{KeyRange, RangeOptions};

use super::*;
use crate::codec::{Key, decode_values};
use crate::model::work::TextPart;

/// The most bytes of text one stored value holds, counted as JSON writes it
/// (`"` and `\` as two bytes, control characters as six): the rest of the
/// 100 000 bytes is room for the record's other fields.
const PART_BYTES: usize = 64 * 1024;

/// The most parts a text can need: every character of the longest text
/// written as a six-byte escape.
const MAX_PARTS: usize = (MAX_CONTENT_BYTES * 6).div_ceil(PART_BYTES);

/// `text` in pieces of at most [`PART_BYTES`] each as JSON, cut at
/// character boundaries; one piece (perhaps empty) at least.
pub(super) fn split(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (at, c) in text.char_indices() {
        let cost = match c {
            '"' | '\\' => 2,
            c if c < ' ' => 6,
            c => c.len_utf8(),
        };
        if size + cost > PART_BYTES {
            pieces.push(&text[start..at]);
            (start, size) = (at, 0);
        }
        size += cost;
    }
    pieces.push(&text[start..]);
    pieces
}

/// How many pieces follow the first, as a record counts them.
pub(super) fn later(pieces: &[&str]) -> Result<u32> {
    u32::try_from(pieces.len().saturating_sub(1))
        .map_err(|_| Error::internal("a text in too many parts"))
}

/// Writes `pieces` after the first as parts 1, 2, … under `key(n)`.
pub(super) async fn write(
    tx: &Tx,
    pieces: &[&str],
    key: impl Fn(u32) -> Key<TextPart>,
) -> Result<(), TxError<Error>> {
    for (n, piece) in (1..).zip(pieces.iter().skip(1)) {
        key(n).put(tx, &TextPart(piece.to_string())).await?;
    }
    Ok(())
}

/// Appends the `count` parts stored in `range` to `text`.
pub(super) async fn read(
    tx: &Tx,
    range: &KeyRange,
    count: u32,
    text: &mut String,
) -> Result<(), TxError<Error>> {
    let count = count as usize;
    if count == 0 {
        return Ok(());
    }
    let found = tx
        .get_range(range, RangeOptions::limit(count.min(MAX_PARTS)))
        .await?;
    if found.entries.len() != count {
        return abort(Error::internal(format!(
            "a stored text has {} of its {count} parts",
            found.entries.len()
        )));
    }
    for part in decode_values::<TextPart>(&found.entries).map_err(TxError::Abort)? {
        text.push_str(&part.0);
    }
    Ok(())
}
