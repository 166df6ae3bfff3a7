//! Reading a JSON body field by field, recording a detail per violation, as the production
//! server's schema library (Zod 4) words and places them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::limits;
use crate::text::js_len;

/// One validation failure: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Where: `exception.type`, `frames.3.filename`, `""` for the body itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The most details one answer carries: a body with thousands of bad fields gets a bounded
/// answer (and the last detail says how many more there were).
pub const MAX_DETAILS: usize = 100;

/// A string rule: length bounds and whether `null` counts as absent.
#[derive(Clone, Copy)]
pub(crate) struct Str {
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) nullable: bool,
}

impl Str {
    /// Any length up to `max`.
    pub(crate) const fn max(max: usize) -> Str {
        Str {
            min: 0,
            max,
            nullable: false,
        }
    }
    /// Between `min` and `max`.
    pub(crate) const fn between(min: usize, max: usize) -> Str {
        Str {
            min,
            max,
            nullable: false,
        }
    }
    /// Any length.
    pub(crate) const ANY: Str = Str::max(usize::MAX);
    /// Also `null`.
    pub(crate) const fn or_null(self) -> Str {
        Str {
            nullable: true,
            ..self
        }
    }
}

/// An integer rule (JavaScript's safe integers).
#[derive(Clone, Copy, Default)]
pub(crate) struct Int {
    /// Lowest allowed, inclusive.
    pub(crate) min: Option<i64>,
    /// Highest allowed, inclusive.
    pub(crate) max: Option<i64>,
    pub(crate) nullable: bool,
}

/// How a route bounds a stack frame's fields.
#[derive(Clone, Copy)]
pub(crate) struct FrameRules {
    /// Whether `filename` must be present.
    pub(crate) filename_required: bool,
    /// `filename`.
    pub(crate) filename: Str,
    /// The longest `function`.
    pub(crate) function: usize,
    /// `context_line`.
    pub(crate) context_line: Str,
    /// Each line of `pre_context`/`post_context`.
    pub(crate) context_item: Str,
    /// Lines of `pre_context`/`post_context`.
    pub(crate) context_lines: usize,
}

pub(crate) struct Checker {
    details: Vec<Detail>,
    dropped: usize,
}

pub(crate) fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

/// Where a field sits in the body (`frames.3.filename`), written out only when a detail
/// needs it: a valid body, the common case, never pays for the paths of its fields.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    /// A path written whole (`request.url`); `""` is the body itself.
    Whole(&'a str),
    /// A field of the object at a path.
    Key(&'a Path<'a>, &'a str),
    /// An item of the array at a path.
    Item(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The path of field `key` of the object here.
    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path::Key(self, key)
    }

    /// The path of item `index` of the array here.
    pub(crate) fn item(&self, index: usize) -> Path<'_> {
        Path::Item(self, index)
    }

    fn is_body(&self) -> bool {
        matches!(self, Path::Whole(""))
    }
}

impl<'a> From<&'a str> for Path<'a> {
    fn from(path: &'a str) -> Path<'a> {
        Path::Whole(path)
    }
}

/// `parent.key`, or `key` at the body.
impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (parent, last): (&Path<'_>, &dyn std::fmt::Display) = match self {
            Path::Whole(path) => return f.write_str(path),
            Path::Key(parent, key) => (parent, key),
            Path::Item(parent, index) => (parent, index),
        };
        if parent.is_body() {
            write!(f, "{last}")
        } else {
            write!(f, "{parent}.{last}")
        }
    }
}

impl Checker {
    pub(crate) fn new() -> Checker {
        Checker {
            details: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn fail<'p>(&mut self, path: impl Into<Path<'p>>, message: impl Into<String>) {
        if self.details.len() < MAX_DETAILS {
            self.details.push(Detail {
                path: path.into().to_string(),
                message: message.into(),
            });
        } else {
            self.dropped += 1;
        }
    }

    pub(crate) fn expected<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        expected: &str,
        value: Option<&Value>,
    ) {
        let path: Path<'p> = path.into();
        self.fail(
            path,
            format!(
                "Invalid input: expected {expected}, received {}",
                type_name(value)
            ),
        );
    }

    pub(crate) fn error_count(&self) -> usize {
        self.details.len() + self.dropped
    }

    /// The details, or `Ok(value)` when there are none.
    pub(crate) fn finish<T>(mut self, value: impl FnOnce() -> T) -> Result<T, Vec<Detail>> {
        if self.details.is_empty() {
            return Ok(value());
        }
        if self.dropped > 0 {
            let more = self.dropped;
            if let Some(last) = self.details.last_mut() {
                last.message = format!("{} (and {more} more problems)", last.message);
            }
        }
        Err(self.details)
    }

    /// The details so far, for a body rejected before its fields were read.
    pub(crate) fn into_details(self) -> Vec<Detail> {
        self.finish(|| ()).err().unwrap_or_default()
    }

    /// A string field: `Some` when present and valid.
    pub(crate) fn string<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        rule: Str,
    ) -> Option<&'v str> {
        let path: Path<'p> = path.into();
        match value {
            None => None,
            Some(Value::Null) if rule.nullable => None,
            Some(Value::String(text)) => {
                let len = js_len(text);
                if len < rule.min {
                    self.fail(
                        path,
                        format!(
                            "Too small: expected string to have >={} characters",
                            rule.min
                        ),
                    );
                    None
                } else if len > rule.max {
                    self.fail(
                        path,
                        format!("Too big: expected string to have <={} characters", rule.max),
                    );
                    None
                } else {
                    Some(text)
                }
            }
            other => {
                self.expected(path, "string", other);
                None
            }
        }
    }

    /// A required string field.
    pub(crate) fn required_string<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        rule: Str,
    ) -> Option<&'v str> {
        let path: Path<'p> = path.into();
        if value.is_none() {
            self.expected(path, "string", None);
            return None;
        }
        self.string(path, value, rule)
    }

    /// A number field (any finite number): `Some` when present and valid.
    pub(crate) fn number<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&Value>,
        nullable: bool,
    ) -> Option<f64> {
        let path: Path<'p> = path.into();
        match value {
            None => None,
            Some(Value::Null) if nullable => None,
            Some(Value::Number(n)) => n.as_f64(),
            other => {
                self.expected(path, "number", other);
                None
            }
        }
    }

    /// An integer field.
    pub(crate) fn int<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&Value>,
        rule: Int,
    ) -> Option<i64> {
        let path: Path<'p> = path.into();
        let n = self.number(path, value, rule.nullable)?;
        if n.fract() != 0.0 || n.abs() > limits::MAX_SAFE_INTEGER {
            self.fail(path, "Invalid input: expected int, received number");
            return None;
        }
        let n = n as i64;
        if let Some(min) = rule.min.filter(|&min| n < min) {
            self.fail(path, format!("Too small: expected number to be >={min}"));
            return None;
        }
        if let Some(max) = rule.max.filter(|&max| n > max) {
            self.fail(path, format!("Too big: expected number to be <={max}"));
            return None;
        }
        Some(n)
    }

    /// A boolean field.
    pub(crate) fn boolean<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&Value>,
    ) -> Option<bool> {
        let path: Path<'p> = path.into();
        match value {
            None => None,
            Some(Value::Bool(flag)) => Some(*flag),
            other => {
                self.expected(path, "boolean", other);
                None
            }
        }
    }

    /// One of `options`.
    pub(crate) fn one_of<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        options: &[&str],
    ) -> Option<&'v str> {
        let path: Path<'p> = path.into();
        match value {
            None => None,
            Some(Value::String(text)) if options.contains(&text.as_str()) => Some(text),
            _ => {
                let listed: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                self.fail(
                    path,
                    format!("Invalid option: expected one of {}", listed.join("|")),
                );
                None
            }
        }
    }

    /// An object field (`expected object` otherwise).
    pub(crate) fn object<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        nullable: bool,
    ) -> Option<&'v Map<String, Value>> {
        self.map_of("object", path, value, nullable)
    }

    /// A record field: an object whose values are anything (`expected record` otherwise).
    pub(crate) fn record<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        nullable: bool,
    ) -> Option<&'v Map<String, Value>> {
        self.map_of("record", path, value, nullable)
    }

    /// A JSON object, which the production schema calls `kind`.
    fn map_of<'p, 'v>(
        &mut self,
        kind: &str,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        nullable: bool,
    ) -> Option<&'v Map<String, Value>> {
        let path: Path<'p> = path.into();
        match value {
            None => None,
            Some(Value::Null) if nullable => None,
            Some(Value::Object(object)) => Some(object),
            other => {
                self.expected(path, kind, other);
                None
            }
        }
    }

    /// A record of strings: keys and values within their rules.
    pub(crate) fn string_record<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&Value>,
        key_max: usize,
        value_rule: Str,
    ) {
        let path: Path<'p> = path.into();
        let Some(map) = self.record(path, value, false) else {
            return;
        };
        for (key, item) in map {
            let at = path.key(key);
            if js_len(key) > key_max {
                self.fail(at, "Invalid key in record");
            }
            self.string(at, Some(item), value_rule);
        }
    }

    /// An array field: each item checked by `item`; the length bound only applies when every
    /// item passed (as the production schemas do).
    pub(crate) fn array<'p, 'v>(
        &mut self,
        path: impl Into<Path<'p>>,
        value: Option<&'v Value>,
        max: usize,
        nullable: bool,
        mut item: impl FnMut(&mut Checker, Path<'_>, &'v Value),
    ) -> Option<&'v [Value]> {
        let path: Path<'p> = path.into();
        let items = match value {
            None => return None,
            Some(Value::Null) if nullable => return None,
            Some(Value::Array(items)) => items,
            other => {
                self.expected(path, "array", other);
                return None;
            }
        };
        let before = self.error_count();
        for (i, element) in items.iter().enumerate() {
            item(self, path.item(i), element);
        }
        if self.error_count() != before {
            return None;
        }
        if items.len() > max {
            self.fail(
                path,
                format!("Too big: expected array to have <={max} items"),
            );
            return None;
        }
        Some(items)
    }

    /// A `user` object: `id`, `email` and `username` up to `field_max`, `ip_address` up to
    /// `ip_max`. Its id, when valid.
    pub(crate) fn user(
        &mut self,
        value: Option<&Value>,
        field_max: usize,
        ip_max: usize,
    ) -> Option<String> {
        let user = self.object("user", value, false)?;
        let id = self.string("user.id", user.get("id"), Str::max(field_max));
        self.string("user.email", user.get("email"), Str::max(field_max));
        self.string("user.ip_address", user.get("ip_address"), Str::max(ip_max));
        self.string("user.username", user.get("username"), Str::max(field_max));
        id.map(str::to_owned)
    }

    /// A `request` object: `url`, `method` and `query_string` within their bounds, `headers`
    /// strings. Its URL, when valid.
    pub(crate) fn request(
        &mut self,
        value: Option<&Value>,
        url_max: usize,
        method_max: usize,
        query_max: usize,
    ) -> Option<String> {
        let request = self.object("request", value, false)?;
        let url = self.string("request.url", request.get("url"), Str::max(url_max));
        self.string(
            "request.method",
            request.get("method"),
            Str::max(method_max),
        );
        self.string_record(
            "request.headers",
            request.get("headers"),
            usize::MAX,
            Str::ANY,
        );
        self.string(
            "request.query_string",
            request.get("query_string"),
            Str::max(query_max),
        );
        url.map(str::to_owned)
    }

    /// A stack frame's common fields (`filename`, `function`, `lineno`, `colno`, `in_app`,
    /// `context_line`, `pre_context`, `post_context`) under the route's `rules`.
    pub(crate) fn frame<'p>(
        &mut self,
        path: impl Into<Path<'p>>,
        frame: &Map<String, Value>,
        rules: FrameRules,
    ) -> super::AcceptedFrame {
        let path: Path<'p> = path.into();
        let filename_path = path.key("filename");
        let filename = if rules.filename_required {
            self.required_string(filename_path, frame.get("filename"), rules.filename)
        } else {
            self.string(filename_path, frame.get("filename"), rules.filename)
        };
        let function = self.string(
            path.key("function"),
            frame.get("function"),
            Str::max(rules.function).or_null(),
        );
        let int = Int {
            nullable: true,
            ..Int::default()
        };
        let lineno = self.int(path.key("lineno"), frame.get("lineno"), int);
        let colno = self.int(path.key("colno"), frame.get("colno"), int);
        let in_app = self.boolean(path.key("in_app"), frame.get("in_app"));
        self.string(
            path.key("context_line"),
            frame.get("context_line"),
            rules.context_line.or_null(),
        );
        for key in ["pre_context", "post_context"] {
            self.array(
                path.key(key),
                frame.get(key),
                rules.context_lines,
                true,
                |c, at, line| {
                    c.string(at, Some(line), rules.context_item);
                },
            );
        }
        super::AcceptedFrame {
            filename: filename.map(str::to_owned),
            function: function.map(str::to_owned),
            lineno,
            colno,
            in_app,
        }
    }

    /// A value that must be one of several shapes: one detail at `path` when it is none.
    pub(crate) fn union_failed<'p>(&mut self, path: impl Into<Path<'p>>) {
        let path: Path<'p> = path.into();
        self.fail(path, "Invalid input");
    }
}

/// A point in time as the production server reads it: a number is seconds below 1e12 and
/// milliseconds otherwise; a string is parsed as a date (the time of receipt when it is not
/// one). `Err` when the number is no date JavaScript can hold.
pub(crate) fn timestamp_ms(value: &Value, now_ms: i64) -> Result<i64, ()> {
    match value {
        Value::Number(n) => {
            let n = n.as_f64().ok_or(())?;
            let ms = if n < 1e12 { n * 1000.0 } else { n };
            if ms.is_finite() && ms.abs() <= limits::MAX_DATE_MS {
                Ok(ms.trunc() as i64)
            } else {
                Err(())
            }
        }
        Value::String(text) => Ok(parse_date(text).unwrap_or(now_ms)),
        _ => Err(()),
    }
}

/// The forms of date string JavaScript's `Date.parse` reads the same everywhere: ISO 8601
/// with or without a time and offset (no offset: UTC, as on the production server).
fn parse_date(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc().timestamp_millis())
}

/// The detail of a number that is no date.
pub(crate) const INVALID_DATE: &str =
    "Invalid date: a time JavaScript cannot represent (beyond ±8.64e15 ms)";

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn paths_are_written_as_production_places_them() {
        let values = Path::from("exception.values");
        let entry = values.item(2);
        let frames = entry.key("stacktrace");
        let frames = frames.key("frames");
        let frame = frames.item(0);
        assert_eq!(
            frame.key("filename").to_string(),
            "exception.values.2.stacktrace.frames.0.filename"
        );
        let body = Path::from("");
        assert_eq!(body.key("message").to_string(), "message");
        assert_eq!(body.item(3).to_string(), "3");
        assert_eq!(body.to_string(), "");
    }
}
