//! The issue list as a terminal table: what `errorwatch-server issues` and the demo print.

use std::fmt::Write;

use crate::store::Group;

/// `groups` as a table, one line each, with a header: status (and a regression mark), level,
/// events, users, last seen, culprit and title. Long values are cut to keep the columns.
///
/// ```
/// let table = errorwatch_server::issue_table(&[]);
/// assert!(table.starts_with("STATUS"));
/// ```
pub fn issue_table(groups: &[Group]) -> String {
    let mut out = format!(
        "{:<12} {:<7} {:>7} {:>5}  {:<19}  {:<32}  {}\n",
        "STATUS", "LEVEL", "EVENTS", "USERS", "LAST SEEN (UTC)", "FILE:LINE", "ISSUE"
    );
    for group in groups {
        let status = if group.regressed_at.is_some() && group.status == "unresolved" {
            "regressed".to_owned()
        } else {
            group.status.clone()
        };
        // A response's status has no line of the application: production stores `""` and 0.
        let place = match (group.file.as_deref().filter(|f| !f.is_empty()), group.line) {
            (Some(file), Some(line)) if line > 0 => format!("{}:{line}", tail(file, 26)),
            (Some(file), _) => tail(file, 32),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<12} {:<7} {:>7} {:>5}  {:<19}  {:<32}  {}",
            status,
            group.level,
            group.count,
            group.users_affected,
            // `2026-11-21T09:35:17.877Z` -> `2026-11-21 09:35:17`.
            group
                .last_seen
                .get(..19)
                .unwrap_or(&group.last_seen)
                .replace('T', " "),
            place,
            head(&group.title, 72)
        );
    }
    out
}

fn head(text: &str, max: usize) -> String {
    // Titles are shown on one line.
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() <= max {
        text
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_owned()
    } else {
        format!(
            "…{}",
            text.chars().skip(count - (max - 1)).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(title: &str, file: &str, line: i64) -> Group {
        Group {
            fingerprint: "f".into(),
            project_id: 1,
            title: title.into(),
            error_type: None,
            error_value: None,
            grouping_rule: "exception".into(),
            level: "error".into(),
            status: "unresolved".into(),
            count: 12,
            users_affected: 3,
            first_seen: "2026-11-21T09:35:17.877Z".into(),
            last_seen: "2026-11-21T10:00:01.000Z".into(),
            file: Some(file.into()),
            line: Some(line),
            env: "production".into(),
            regressed_at: Some("2026-11-21T10:00:01.000Z".into()),
        }
    }

    #[test]
    fn a_row_holds_its_issue_on_one_line() {
        let long = format!("OrderError: {}\nsecond line", "x".repeat(100));
        let table = issue_table(&[group(&long, "src/very/deep/module/path/orders.rs", 42)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        let row = lines[1];
        assert!(
            row.starts_with("regressed    error        12     3  2026-11-21 10:00:01"),
            "{row}"
        );
        assert!(row.contains("  …eep/module/path/orders.rs:42  "), "{row}");
        assert!(row.ends_with('…'), "{row}");
    }
}
