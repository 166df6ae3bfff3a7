//! The stack text: how a v2 event's frames read as the `stack` the server stores and shows.

use std::fmt::Write as _;

/// One frame as the stack text needs it.
pub trait StackFrame {
    /// The frame's file.
    fn filename(&self) -> &str;
    /// The frame's function, if known.
    fn function(&self) -> Option<&str>;
    /// The frame's line, if known.
    fn lineno(&self) -> Option<i64>;
    /// The frame's column, if known.
    fn colno(&self) -> Option<i64>;
}

impl StackFrame for crate::Frame {
    fn filename(&self) -> &str {
        &self.filename
    }
    fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }
    fn lineno(&self) -> Option<i64> {
        self.lineno.map(i64::from)
    }
    fn colno(&self) -> Option<i64> {
        self.colno.map(i64::from)
    }
}

/// The frames, innermost first, as `  at function (file:line:col)` lines: the production
/// server's rendering of a v2 event without a `stack` (`<anonymous>` for a missing function;
/// a missing line or column is left out).
///
/// ```
/// use errorwatch_protocol::{stack, Frame};
/// let frame = Frame {
///     filename: "src/main.rs".into(),
///     function: Some("app::run".into()),
///     lineno: Some(7),
///     ..Frame::default()
/// };
/// assert_eq!(stack::render(&[frame]), "  at app::run (src/main.rs:7)");
/// ```
pub fn render<F: StackFrame>(frames: &[F]) -> String {
    let mut text = String::with_capacity(frames.len() * 80);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let function = frame.function().unwrap_or("<anonymous>");
        let _ = write!(text, "  at {function} ({}", frame.filename());
        for part in [frame.lineno(), frame.colno()].into_iter().flatten() {
            let _ = write!(text, ":{part}");
        }
        text.push(')');
    }
    text
}
