//! `cargo bench -p errorwatch-compare --bench sdks`
//!
//! errorwatch and sentry-rust 0.49 side by side, under identical conditions: each scenario
//! runs in a fresh process per SDK (so peak memory is the scenario's own), against the same
//! in-process HTTP sink, with the same loops, error values and counts. The processes of the
//! two SDKs are interleaved, round after round, and each figure is the median of the rounds
//! with the [min..max] spread; `ours/sentry` is the ratio of the medians. A `floor` column is
//! the same loop with no SDK (or a layer that does nothing), where that means something.
//!
//! Built by `cargo bench` with the workspace's bench profile: optimised, with line tables
//! (`debug = "line-tables-only"`), as services ship; stacks are symbolised from them.
//!
//! `COMPARE_ROUNDS` (default 5) sets the rounds; `COMPARE_ONLY=storm,init` runs some
//! scenarios alone. The slow scenarios (the storm, memory) run 3 rounds at most.
//! `COMPARE_SINK_PRIORITY=normal` runs the sink at the normal CPU priority instead of the
//! lowest (see `sink.rs`).

mod probe;
mod scenarios;
mod sink;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scenarios::Sdk;
use serde_json::{Map, Value};

const CHILD: &str = "COMPARE_CHILD";
/// A child that takes longer than this is killed and the run fails.
const CHILD_LIMIT: Duration = Duration::from_secs(300);

/// The scenarios, in order, and who runs each.
const SCENARIOS: &[(&str, &[Sdk])] = &[
    ("init", &[Sdk::Errorwatch, Sdk::Sentry]),
    ("message", &[Sdk::Errorwatch, Sdk::Sentry, Sdk::Floor]),
    ("error", &[Sdk::Errorwatch, Sdk::Sentry]),
    ("error+stack", &[Sdk::Errorwatch, Sdk::Sentry, Sdk::Floor]),
    ("breadcrumb", &[Sdk::Errorwatch, Sdk::Sentry, Sdk::Floor]),
    ("tracing error", &[Sdk::Errorwatch, Sdk::Sentry]),
    ("axum layer", &[Sdk::Errorwatch, Sdk::Sentry, Sdk::Floor]),
    ("storm", &[Sdk::Errorwatch, Sdk::Sentry]),
    ("memory, messages", &[Sdk::Errorwatch, Sdk::Sentry]),
    ("memory, mixed", &[Sdk::Errorwatch, Sdk::Sentry]),
];

/// Scenarios that take seconds per process.
const SLOW: &[&str] = &["storm", "memory, messages", "memory, mixed"];

fn main() {
    if let Ok(child) = std::env::var(CHILD) {
        std::process::exit(run_child(&child));
    }
    let rounds = std::env::var("COMPARE_ROUNDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let only: Option<Vec<String>> = std::env::var("COMPARE_ONLY")
        .ok()
        .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect());
    println!("errorwatch vs sentry-rust 0.49.5, one process per scenario and SDK, interleaved");
    println!("machine: {} cores, {}", cores(), cpu_model());

    // figures[scenario][sdk][metric] = one value per round
    let mut figures: BTreeMap<&str, BTreeMap<&str, BTreeMap<String, Vec<f64>>>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..rounds {
        for &(scenario, sdks) in SCENARIOS {
            if only
                .as_ref()
                .is_some_and(|only| !only.iter().any(|s| s == scenario))
            {
                continue;
            }
            if SLOW.contains(&scenario) && round >= 3 {
                continue;
            }
            // Who goes first alternates from round to round.
            let mut order = sdks.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for sdk in order {
                let result = match spawn_child(scenario, sdk) {
                    Ok(result) => result,
                    Err(error) => {
                        eprintln!("{scenario} / {}: {error}", sdk.name());
                        std::process::exit(1);
                    }
                };
                let by_metric = figures
                    .entry(scenario)
                    .or_default()
                    .entry(sdk.name())
                    .or_default();
                for (metric, value) in result {
                    if let Some(value) = value.as_f64() {
                        by_metric.entry(metric).or_default().push(value);
                    }
                }
            }
        }
        eprintln!(
            "round {} of {rounds} done after {:.0} s",
            round + 1,
            started.elapsed().as_secs_f64()
        );
    }
    report(&figures);
    println!("\n(whole run: {:.0} s)", started.elapsed().as_secs_f64());
}

/// In a child: runs one scenario and prints its figures as one JSON line.
fn run_child(child: &str) -> i32 {
    let Some((scenario, sdk)) = child.rsplit_once('/') else {
        eprintln!("{CHILD} is \"<scenario>/<sdk>\", not {child:?}");
        return 2;
    };
    let Some(sdk) = Sdk::parse(sdk) else {
        eprintln!("{CHILD}: no SDK named {sdk:?}");
        return 2;
    };
    match scenarios::run(scenario, sdk) {
        Ok(figures) => {
            println!("{}", Value::Object(figures));
            0
        }
        Err(error) => {
            eprintln!("{error}");
            2
        }
    }
}

fn spawn_child(scenario: &str, sdk: Sdk) -> Result<Map<String, Value>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let mut child = Command::new(exe)
        .env(CHILD, format!("{scenario}/{}", sdk.name()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {CHILD_LIMIT:?}; killed"));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut output)
            .map_err(|e| format!("its output: {e}"))?;
    }
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    let line = output.lines().last().unwrap_or_default();
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(figures)) => Ok(figures),
        _ => Err(format!("its last line is not a JSON object: {line:?}")),
    }
}

/// Median with the spread of one metric's rounds.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some((
        *sorted.get(sorted.len() / 2)?,
        *sorted.first()?,
        *sorted.last()?,
    ))
}

fn show(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn cell(values: Option<&Vec<f64>>) -> String {
    match values.and_then(|v| spread(v)) {
        Some((median, min, max)) => format!("{} [{}..{}]", show(median), show(min), show(max)),
        None => "-".into(),
    }
}

/// The processes (rounds) whose count is at least one: "k of n".
fn rounds_with_one(values: Option<&Vec<f64>>) -> String {
    match values {
        Some(values) => format!(
            "{} of {}",
            values.iter().filter(|&&count| count > 0.0).count(),
            values.len()
        ),
        None => "-".into(),
    }
}

/// One line of the report, in its columns.
fn row(scenario: &str, figure: &str, ours: &str, sentry: &str, ratio: &str, floor: &str) {
    println!("{scenario:<17} {figure:<30} {ours:>26} {sentry:>26} {ratio:>10} {floor:>22}");
}

type Figures<'a> = BTreeMap<&'a str, BTreeMap<&'a str, BTreeMap<String, Vec<f64>>>>;

fn report(figures: &Figures<'_>) {
    println!();
    row(
        "scenario",
        "figure",
        "errorwatch",
        "sentry",
        "ours/sentry",
        "floor",
    );
    for &(scenario, _) in SCENARIOS {
        let Some(by_sdk) = figures.get(scenario) else {
            continue;
        };
        let empty = BTreeMap::new();
        let ours = by_sdk.get("errorwatch").unwrap_or(&empty);
        let sentry = by_sdk.get("sentry").unwrap_or(&empty);
        let floor = by_sdk.get("floor").unwrap_or(&empty);
        for (metric, values) in ours {
            let ratio = match (spread(values), sentry.get(metric).and_then(|v| spread(v))) {
                (Some((a, _, _)), Some((b, _, _))) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            row(
                scenario,
                metric,
                &cell(Some(values)),
                &cell(sentry.get(metric)),
                &ratio,
                &cell(floor.get(metric)),
            );
            // A count that is usually 0: how many processes had any says more than its median.
            if metric.starts_with("calls above") {
                row(
                    scenario,
                    "  processes with one",
                    &rounds_with_one(Some(values)),
                    &rounds_with_one(sentry.get(metric)),
                    "",
                    &rounds_with_one(floor.get(metric)),
                );
            }
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
