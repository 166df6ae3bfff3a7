//! Text as the production server sees it: lengths in UTF-16 units, and what it cannot store.

/// The length of `text` as JavaScript counts it (UTF-16 code units: an emoji counts 2).
///
/// ```
/// use errorwatch_protocol::text::js_len;
/// assert_eq!(js_len("é"), 1);
/// assert_eq!(js_len("😀"), 2);
/// ```
pub fn js_len(text: &str) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    text.chars().map(char::len_utf16).sum()
}

/// The byte index where `text` must be cut to keep at most `max` UTF-16 units, on a character
/// boundary; `None` when it already fits.
fn cut_point(text: &str, max: usize) -> Option<usize> {
    // No character takes more UTF-16 units than UTF-8 bytes.
    if text.len() <= max {
        return None;
    }
    let mut units = 0;
    for (index, ch) in text.char_indices() {
        units += ch.len_utf16();
        if units > max {
            return Some(index);
        }
    }
    None
}

/// Cuts free text to at most `max` UTF-16 units, marking the cut with `…` (which counts 1).
///
/// ```
/// use errorwatch_protocol::text::{js_len, truncate};
/// let mut text = "😀".repeat(10);
/// truncate(&mut text, 10);
/// assert_eq!(js_len(&text), 9); // four emoji and the mark: never half an emoji
/// assert!(text.ends_with('…'));
/// ```
pub fn truncate(text: &mut String, max: usize) {
    if cut_point(text, max).is_none() {
        return;
    }
    if max == 0 {
        text.clear();
        return;
    }
    if let Some(cut) = cut_point(text, max - 1) {
        text.truncate(cut);
        text.push('…');
    }
}

/// Cuts text to at most `max` UTF-16 units without a mark: for values where an added
/// character would change their meaning (identifiers, URLs).
pub fn truncate_plain(text: &mut String, max: usize) {
    if let Some(cut) = cut_point(text, max) {
        text.truncate(cut);
    }
}

/// Whether `text` holds a character the production store cannot keep (U+0000: PostgreSQL's
/// `text` and `jsonb` reject it, and production loses the event after answering 202).
pub fn has_unstorable(text: &str) -> bool {
    text.contains('\0')
}

/// Removes the characters the production store cannot keep (see [`has_unstorable`]).
///
/// ```
/// let mut text = String::from("nul\0byte");
/// errorwatch_protocol::text::remove_unstorable(&mut text);
/// assert_eq!(text, "nulbyte");
/// ```
pub fn remove_unstorable(text: &mut String) {
    if has_unstorable(text) {
        text.retain(|c| c != '\0');
    }
}

/// JavaScript's `String.prototype.trim`: Unicode white space, line terminators and the BOM.
pub fn js_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_count_utf16_units_and_keep_boundaries() {
        let mut text = "é".repeat(20);
        truncate(&mut text, 10);
        assert_eq!((js_len(&text), text.ends_with('…')), (10, true));
        let mut exact = "é".repeat(10);
        truncate(&mut exact, 10);
        assert_eq!(exact, "é".repeat(10), "a string at its limit is left alone");
        let mut plain = "😀😀".to_owned();
        truncate_plain(&mut plain, 3);
        assert_eq!(plain, "😀");
        let mut none = "abc".to_owned();
        truncate(&mut none, 0);
        assert_eq!(none, "");
    }
}
