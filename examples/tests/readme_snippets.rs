//! Every Rust snippet of the READMEs compiles in a fresh project that has exactly the
//! `[dependencies]` lines shown above it: what a user copies, with what the README tells them
//! to add, builds. (The doctests compile the same snippets against the workspace's own
//! dependencies, which could hide a missing line or feature.)

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates of this workspace, found by path since they may not be published yet.
const OURS: &[(&str, &str)] = &[
    ("errorwatch-protocol", "errorwatch-protocol"),
    ("errorwatch-sdk", "errorwatch-sdk"),
    ("errorwatch-tracing", "errorwatch-tracing"),
    ("errorwatch-axum", "errorwatch-axum"),
    ("errorwatch-actix", "errorwatch-actix"),
];

const READMES: &[&str] = &[
    "README.md",
    "errorwatch-protocol/README.md",
    "errorwatch-sdk/README.md",
    "errorwatch-tracing/README.md",
    "errorwatch-axum/README.md",
    "errorwatch-actix/README.md",
];

/// A Rust snippet and the dependency lines the README gives for it.
struct Snippet {
    origin: String,
    dependencies: String,
    code: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples crate is in the workspace")
        .to_path_buf()
}

/// Each `rust` block, with the last `toml` block holding `[dependencies]` before it.
fn snippets(readme: &str, text: &str) -> Vec<Snippet> {
    let mut found = Vec::new();
    let mut dependencies: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((number, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, line)| line)
            .take_while(|line| !line.starts_with("```"))
            .collect();
        let body = body.join("\n");
        if info == "toml" && body.contains("[dependencies]") {
            dependencies = Some(body);
        } else if info.starts_with("rust") && !info.contains("ignore") {
            let origin = format!("{readme}:{}", number + 1);
            let dependencies = dependencies
                .clone()
                .unwrap_or_else(|| panic!("{origin}: no [dependencies] block above the snippet"));
            found.push(Snippet {
                origin,
                dependencies,
                code: body,
            });
        }
    }
    found
}

#[test]
fn every_readme_snippet_builds_in_a_fresh_project_with_its_dependency_lines() {
    let root = workspace();
    let mut all = Vec::new();
    for readme in READMES {
        let text = std::fs::read_to_string(root.join(readme)).expect("the README exists");
        all.extend(snippets(readme, &text));
    }
    assert!(all.len() >= 10, "found only {} snippets", all.len());

    let projects = root.join("target/readme-snippets");
    let patch: String = OURS
        .iter()
        .map(|(name, dir)| format!("{name} = {{ path = {:?} }}\n", root.join(dir)))
        .collect();
    let mut failures = Vec::new();
    for (index, snippet) in all.iter().enumerate() {
        let project = projects.join(format!("snippet-{index}"));
        std::fs::create_dir_all(project.join("src")).expect("a project directory");
        let manifest = format!(
            "[package]\nname = \"snippet-{index}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             {}\n\n[patch.crates-io]\n{patch}\n[workspace]\n",
            snippet.dependencies
        );
        std::fs::write(project.join("Cargo.toml"), manifest).expect("a manifest");
        std::fs::write(project.join("src/main.rs"), &snippet.code).expect("the snippet");
        // The workspace's lock keeps the versions the same (and most of them already fetched).
        std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).expect("the lock");
        let output = Command::new(env!("CARGO"))
            .args(["check", "--quiet"])
            .current_dir(&project)
            // One target directory for every snippet: dependencies are built once. Not the
            // workspace's, which the running `cargo test` holds.
            .env("CARGO_TARGET_DIR", projects.join("target"))
            .output()
            .expect("cargo runs");
        if !output.status.success() {
            failures.push(format!(
                "{}:\n{}",
                snippet.origin,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
