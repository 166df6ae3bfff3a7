//! What each page shows, as plain values, and the template that shows it. The templates
//! (`templates/`) escape every value; nothing here writes HTML.

use askama::Template;
use serde_json::Value;

use super::event_view::{scalar, EventView};
use super::ListParams;
use crate::store::{
    Group, GroupQuery, GroupSort, HourCount, Project, SeenValue, StoredEvent, HOUR_MS,
};

/// The statuses an issue can have.
pub(super) const STATUSES: [&str; 3] = ["unresolved", "resolved", "ignored"];
const LEVELS: [&str; 5] = ["fatal", "error", "warning", "info", "debug"];

/// The link to an issue (fingerprints are hex, but encode anyway).
pub(super) fn issue_href(fingerprint: &str) -> String {
    format!("/issues/{}", encode(fingerprint))
}

fn encode(segment: &str) -> String {
    serde_urlencoded::to_string([("", segment)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// "3 min ago", "2 h ago", "5 d ago".
fn ago(then_rfc3339: &str, now: i64) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(then_rfc3339) else {
        return then_rfc3339.to_owned();
    };
    let secs = (now - then.timestamp_millis()).max(0) / 1000;
    match secs {
        0..60 => "just now".into(),
        60..3_600 => format!("{} min ago", secs / 60),
        3_600..86_400 => format!("{} h ago", secs / 3_600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A moment shown relative, with its exact time beside.
pub(crate) struct When {
    pub(crate) ago: String,
    pub(crate) exact: String,
}

impl When {
    fn new(rfc3339: &str, now: i64) -> When {
        When {
            ago: ago(rfc3339, now),
            exact: rfc3339.to_owned(),
        }
    }
}

pub(crate) struct ProjectOption {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) selected: bool,
}

fn project_options(projects: Vec<Project>, selected: Option<i64>) -> Vec<ProjectOption> {
    projects
        .into_iter()
        .map(|p| ProjectOption {
            selected: Some(p.id) == selected,
            id: p.id,
            name: p.name,
        })
        .collect()
}

pub(crate) struct Choice {
    pub(crate) value: &'static str,
    pub(crate) label: &'static str,
    pub(crate) selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|&(value, label)| Choice {
            value,
            label,
            selected: value == current,
        })
        .collect()
}

// ---- the chart ----------------------------------------------------------------------------

/// One bar of an activity chart (24 bars, one per hour, the last the current hour).
pub(crate) struct Bar {
    pub(crate) x: i64,
    pub(crate) y: i64,
    pub(crate) height: i64,
    pub(crate) label: String,
}

const CHART_HEIGHT: i64 = 24;

fn chart(fingerprint: &str, activity: &[HourCount], now: i64) -> Vec<Bar> {
    let current = now.div_euclid(HOUR_MS);
    let mut counts = [0i64; 24];
    for hour in activity.iter().filter(|h| h.fingerprint == fingerprint) {
        let back = current - hour.hour;
        if (0..24).contains(&back) {
            counts[23 - back as usize] += hour.count;
        }
    }
    let peak = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .enumerate()
        // Empty hours are the chart's background: no element for them.
        .filter(|(_, &count)| count > 0)
        .map(|(i, &count)| {
            // A non-empty hour is always visible, however small beside the peak.
            let height = (count * CHART_HEIGHT / peak).max(2);
            let back = 23 - i;
            let events = if count == 1 {
                "1 event".to_owned()
            } else {
                format!("{count} events")
            };
            Bar {
                x: i as i64 * 4,
                y: CHART_HEIGHT - height,
                height,
                label: match back {
                    0 => format!("{events} this hour"),
                    1 => format!("{events} 1 hour ago"),
                    n => format!("{events} {n} hours ago"),
                },
            }
        })
        .collect()
}

// ---- the list -----------------------------------------------------------------------------

pub(crate) struct IssueRow {
    pub(crate) href: String,
    pub(crate) title: String,
    pub(crate) culprit: String,
    pub(crate) level: String,
    pub(crate) status: String,
    pub(crate) regressed: bool,
    pub(crate) count: i64,
    pub(crate) users: i64,
    pub(crate) first_seen: When,
    pub(crate) last_seen: When,
    pub(crate) bars: Vec<Bar>,
}

fn culprit(group: &Group) -> String {
    match (&group.file, group.line) {
        (Some(file), Some(line)) if line > 0 => format!("{file}:{line}"),
        (Some(file), _) => file.clone(),
        _ => String::new(),
    }
}

/// A new event reopened it after it was resolved, and it has not been resolved since.
fn regressed(group: &Group) -> bool {
    group.regressed_at.is_some() && group.status == "unresolved"
}

#[derive(Template)]
#[template(path = "issues.html")]
pub(crate) struct ListPage {
    pub(crate) csrf: String,
    pub(crate) projects: Vec<ProjectOption>,
    pub(crate) env: String,
    pub(crate) release: String,
    pub(crate) search: String,
    pub(crate) levels: Vec<Choice>,
    pub(crate) statuses: Vec<Choice>,
    pub(crate) sorts: Vec<Choice>,
    pub(crate) rows: Vec<IssueRow>,
    pub(crate) total: i64,
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) prev_href: String,
    pub(crate) next_href: String,
}

impl ListPage {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        csrf: String,
        query: &GroupQuery,
        params: &ListParams,
        projects: Vec<Project>,
        groups: Vec<Group>,
        total: i64,
        activity: &[HourCount],
        now: i64,
    ) -> ListPage {
        let rows: Vec<IssueRow> = groups
            .iter()
            .map(|group| IssueRow {
                href: issue_href(&group.fingerprint),
                title: group.title.clone(),
                culprit: culprit(group),
                level: group.level.clone(),
                status: group.status.clone(),
                regressed: regressed(group),
                count: group.count,
                users: group.users_affected,
                first_seen: When::new(&group.first_seen, now),
                last_seen: When::new(&group.last_seen, now),
                bars: chart(&group.fingerprint, activity, now),
            })
            .collect();
        let offset = (query.page - 1) * query.limit;
        let page_href = |page: i64| {
            let mut pairs: Vec<(&str, String)> = Vec::new();
            for (name, value) in [
                ("project", &params.project),
                ("env", &params.env),
                ("level", &params.level),
                ("status", &params.status),
                ("release", &params.release),
                ("search", &params.search),
                ("sort", &params.sort),
            ] {
                if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                    pairs.push((name, value.to_owned()));
                }
            }
            pairs.push(("page", page.to_string()));
            format!(
                "/issues?{}",
                serde_urlencoded::to_string(&pairs).unwrap_or_default()
            )
        };
        let status = query.status.as_deref().unwrap_or("all");
        let sort = match query.sort {
            GroupSort::LastSeen => "lastSeen",
            GroupSort::FirstSeen => "firstSeen",
            GroupSort::Count => "count",
        };
        let mut levels = vec![Choice {
            value: "",
            label: "any level",
            selected: query.level.is_none(),
        }];
        levels.extend(LEVELS.iter().map(|&l| Choice {
            value: l,
            label: l,
            selected: query.level.as_deref() == Some(l),
        }));
        ListPage {
            csrf,
            projects: project_options(projects, query.project),
            env: query.env.clone().unwrap_or_default(),
            release: query.release.clone().unwrap_or_default(),
            search: query.search.clone().unwrap_or_default(),
            levels,
            statuses: choices(
                &[
                    ("unresolved", "unresolved"),
                    ("resolved", "resolved"),
                    ("ignored", "ignored"),
                    ("all", "any status"),
                ],
                status,
            ),
            sorts: choices(
                &[
                    ("lastSeen", "last seen"),
                    ("firstSeen", "first seen"),
                    ("count", "events"),
                ],
                sort,
            ),
            first: if rows.is_empty() { 0 } else { offset + 1 },
            last: offset + rows.len() as i64,
            prev_href: if query.page > 1 {
                page_href(query.page - 1)
            } else {
                String::new()
            },
            next_href: if offset + (rows.len() as i64) < total {
                page_href(query.page + 1)
            } else {
                String::new()
            },
            rows,
            total,
        }
    }
}

// ---- the detail ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "issue.html")]
pub(crate) struct IssuePage {
    pub(crate) csrf: String,
    pub(crate) href: String,
    pub(crate) title: String,
    pub(crate) culprit: String,
    pub(crate) level: String,
    pub(crate) status: String,
    pub(crate) regressed: bool,
    pub(crate) count: i64,
    pub(crate) users: i64,
    pub(crate) first_seen: When,
    pub(crate) last_seen: When,
    pub(crate) releases: Vec<String>,
    pub(crate) envs: Vec<String>,
    pub(crate) grouping: &'static str,
    /// The fingerprint the SDK sent, when that is what grouped it.
    pub(crate) sdk_fingerprint: String,
    pub(crate) fingerprint: String,
    pub(crate) event: Option<EventView>,
    pub(crate) event_n: i64,
    pub(crate) stored: i64,
    pub(crate) newer_href: String,
    pub(crate) older_href: String,
    /// The actions offered: (status, button label).
    pub(crate) actions: Vec<(&'static str, &'static str)>,
}

impl IssuePage {
    pub(super) fn new(
        csrf: String,
        group: Group,
        event: Option<StoredEvent>,
        n: i64,
        stored: i64,
        seen: Vec<SeenValue>,
        now: i64,
    ) -> IssuePage {
        let href = issue_href(&group.fingerprint);
        let values = |kind: &str| -> Vec<String> {
            seen.iter()
                .filter(|v| v.kind == kind)
                .map(|v| format!("{} ({})", v.value, v.count))
                .collect()
        };
        let actions = match group.status.as_str() {
            "resolved" => vec![("unresolved", "Reopen"), ("ignored", "Ignore")],
            "ignored" => vec![("unresolved", "Stop ignoring"), ("resolved", "Resolve")],
            _ => vec![("resolved", "Resolve"), ("ignored", "Ignore")],
        };
        let sdk_fingerprint = event
            .as_ref()
            .and_then(|e| e.payload.get("fingerprint"))
            .map(|f| match f {
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("|"),
                other => other.as_str().unwrap_or_default().to_owned(),
            })
            .unwrap_or_default();
        let grouping = match group.grouping_rule.as_str() {
            "sdk" => "by the fingerprint the SDK sent: every event with the same fingerprint joins this issue",
            "exception" => "by exception: its type, its message with numbers, addresses, UUIDs and quoted strings taken out, and the culprit frame's file and function (not its line)",
            "location" => "by location: the error type, the culprit file and line, and the shape of the stack",
            _ => "by a rule this server does not know",
        };
        IssuePage {
            csrf,
            newer_href: if n > 1 {
                format!("{href}?event={}", n - 1)
            } else {
                String::new()
            },
            older_href: if n < stored {
                format!("{href}?event={}", n + 1)
            } else {
                String::new()
            },
            href,
            culprit: culprit(&group),
            regressed: regressed(&group),
            releases: values("release"),
            envs: values("env"),
            first_seen: When::new(&group.first_seen, now),
            last_seen: When::new(&group.last_seen, now),
            title: group.title,
            level: group.level,
            status: group.status,
            count: group.count,
            users: group.users_affected,
            grouping,
            sdk_fingerprint: if group.grouping_rule == "sdk" {
                sdk_fingerprint
            } else {
                String::new()
            },
            fingerprint: group.fingerprint,
            event: event.as_ref().map(EventView::new),
            event_n: n,
            stored,
            actions,
        }
    }
}

// ---- sign-in, errors, logs, check-ins ----------------------------------------------------

#[derive(Template)]
#[template(path = "sign_in.html")]
pub(crate) struct SignInPage<'a> {
    pub(crate) next: &'a str,
    pub(crate) error: &'a str,
    pub(crate) enabled: bool,
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage<'a> {
    pub(crate) title: &'a str,
    pub(crate) text: &'a str,
}

/// A row of a table of JSON rows: the listed fields, as text.
fn cells(row: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .map(|field| {
            row.get(*field)
                .filter(|value| !value.is_null())
                .map(scalar)
                .unwrap_or_default()
        })
        .collect()
}

#[derive(Template)]
#[template(path = "table.html")]
/// The newest log lines, or the newest check-ins.
pub(crate) struct RecentPage {
    pub(crate) csrf: String,
    pub(crate) heading: &'static str,
    pub(crate) action: &'static str,
    pub(crate) projects: Vec<ProjectOption>,
    pub(crate) columns: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl RecentPage {
    pub(super) fn logs(
        csrf: String,
        project: Option<i64>,
        projects: Vec<Project>,
        rows: &[Value],
    ) -> RecentPage {
        RecentPage::new(
            csrf,
            "Logs",
            "/logs",
            project_options(projects, project),
            &[
                ("time", "timestamp"),
                ("level", "level"),
                ("channel", "channel"),
                ("message", "message"),
                ("environment", "env"),
                ("release", "release"),
                ("request", "requestId"),
            ],
            rows,
        )
    }

    pub(super) fn checkins(
        csrf: String,
        project: Option<i64>,
        projects: Vec<Project>,
        rows: &[Value],
    ) -> RecentPage {
        RecentPage::new(
            csrf,
            "Check-ins",
            "/checkins",
            project_options(projects, project),
            &[
                ("time", "createdAt"),
                ("job", "slug"),
                ("status", "status"),
                ("duration (ms)", "duration"),
                ("environment", "env"),
                ("check-in id", "checkinId"),
            ],
            rows,
        )
    }

    /// A table of `rows` with `columns`: (heading, the row's field).
    fn new(
        csrf: String,
        heading: &'static str,
        action: &'static str,
        projects: Vec<ProjectOption>,
        columns: &[(&'static str, &str)],
        rows: &[Value],
    ) -> RecentPage {
        let fields: Vec<&str> = columns.iter().map(|(_, field)| *field).collect();
        RecentPage {
            csrf,
            heading,
            action,
            projects,
            columns: columns.iter().map(|(name, _)| *name).collect(),
            rows: rows.iter().map(|row| cells(row, &fields)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_puts_each_hour_in_its_bar() {
        let now = 100 * HOUR_MS + 5;
        let activity = [
            HourCount {
                fingerprint: "a".into(),
                hour: 100,
                count: 10,
            },
            HourCount {
                fingerprint: "a".into(),
                hour: 98,
                count: 1,
            },
            HourCount {
                fingerprint: "a".into(),
                hour: 76,
                count: 99,
            },
            HourCount {
                fingerprint: "b".into(),
                hour: 100,
                count: 50,
            },
        ];
        let bars = chart("a", &activity, now);
        let drawn: Vec<(i64, i64, &str)> = bars
            .iter()
            .map(|b| (b.x, b.height, b.label.as_str()))
            .collect();
        // Hour 76 is 24 hours back: outside. The peak fills the chart; a small hour still shows.
        assert_eq!(
            drawn,
            [
                (84, 2, "1 event 2 hours ago"),
                (92, CHART_HEIGHT, "10 events this hour")
            ]
        );
        assert_eq!(bars[0].y, CHART_HEIGHT - 2);
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(ago("2026-01-01T23:59:30Z", now), "just now");
        assert_eq!(ago("2026-01-01T23:50:00Z", now), "10 min ago");
        assert_eq!(ago("2026-01-01T21:00:00Z", now), "3 h ago");
        assert_eq!(ago("2025-12-30T00:00:00Z", now), "3 d ago");
    }
}
