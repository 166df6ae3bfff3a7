//! Reading a request body as JSON the way the production server's `JSON.parse` does, with the
//! bounds it lacks.
//!
//! JavaScript takes what `serde_json` refuses by default, and production accepts: a leading
//! byte-order mark, lone UTF-16 surrogates in `\u` escapes (kept as U+FFFD, which counts the
//! same one unit), and nesting hundreds of levels deep. Duplicate keys keep the last value, as
//! in JavaScript. Depth is bounded by [`limits::JSON_DEPTH`] so a body cannot exhaust the stack.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::limits;

/// Why a body is not JSON the server can read; its text says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

/// Parses a request body.
///
/// ```
/// let value = errorwatch_protocol::json::parse("\u{feff}{\"m\":\"\\ud800\"}".as_bytes()).unwrap();
/// assert_eq!(value["m"], "\u{fffd}");
/// assert!(errorwatch_protocol::json::parse(b"{\"m\":").is_err());
/// ```
///
/// # Errors
/// When the body is not JSON, or nests deeper than [`limits::JSON_DEPTH`]; the error says
/// where it broke.
pub fn parse(body: &[u8]) -> Result<Value, JsonError> {
    let body = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body);
    let body = prepare(body)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    // `prepare` bounded the depth, so serde_json's own (lower) limit is not needed.
    deserializer.disable_recursion_limit();
    let value = Value::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| JsonError(format!("Malformed JSON: {error}")))?;
    Ok(value)
}

/// Checks the nesting depth and replaces unpaired surrogate escapes by `\ufffd` (the same
/// length, so error positions still point into the original body).
fn prepare(body: &[u8]) -> Result<Cow<'_, [u8]>, JsonError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut fixed: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        if in_string {
            match byte {
                b'"' => in_string = false,
                b'\\' if body.get(i + 1) == Some(&b'u') => {
                    if let Some(unit) = hex4(body, i + 2) {
                        let paired = (0xD800..0xDC00).contains(&unit)
                            && body.get(i + 6) == Some(&b'\\')
                            && body.get(i + 7) == Some(&b'u')
                            && hex4(body, i + 8).is_some_and(|low| (0xDC00..0xE000).contains(&low));
                        if paired {
                            i += 12;
                            continue;
                        }
                        if (0xD800..0xE000).contains(&unit) {
                            let out = fixed.get_or_insert_with(|| body.to_vec());
                            out[i + 2..i + 6].copy_from_slice(b"fffd");
                        }
                        i += 6;
                        continue;
                    }
                    i += 2;
                    continue;
                }
                b'\\' => {
                    i += 2;
                    continue;
                }
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limits::JSON_DEPTH {
                        return Err(JsonError(format!(
                            "JSON nests deeper than {} levels at byte {i}",
                            limits::JSON_DEPTH
                        )));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    Ok(fixed.map_or(Cow::Borrowed(body), Cow::Owned))
}

fn hex4(body: &[u8], at: usize) -> Option<u32> {
    let digits = body.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_javascript_reads() {
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), "😀");
        assert_eq!(parse(br#""a\udc00b""#).unwrap(), "a\u{fffd}b");
        assert_eq!(
            parse(br#""\\ud800""#).unwrap(),
            "\\ud800",
            "an escaped backslash"
        );
        assert_eq!(parse(br#"{"a":1,"a":2}"#).unwrap()["a"], 2);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert!(parse(deep.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_what_is_broken_or_too_deep() {
        for body in [&b""[..], b"   ", b"{\"a\":1,}", b"{\"a\":1}\n{\"b\":2}"] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
        let deep = "[".repeat(limits::JSON_DEPTH + 1);
        assert!(parse(deep.as_bytes()).unwrap_err().0.contains("deeper"));
    }
}
