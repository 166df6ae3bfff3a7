//! The binary's command line: a missing or bad setting, or a port in use, stops it with one
//! clear line and a non-zero exit.

mod support;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_errorwatch-server");

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("API_KEY_HASH_SECRET")
        .env("RUST_LOG", "off");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line, got: {stderr}");
    lines[0]
}

#[test]
fn bad_settings_stop_startup_with_one_line() {
    let db = format!(
        "sqlite://{}/ew-cli-{}.db",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let (ok, _, stderr) = run(&["serve"], &[("DATABASE_URL", &db)]);
    assert!(!ok);
    assert!(
        one_line(&stderr).contains("API_KEY_HASH_SECRET is not set"),
        "{stderr}"
    );

    let (ok, _, stderr) = run(
        &["serve"],
        &[("API_KEY_HASH_SECRET", "short"), ("DATABASE_URL", &db)],
    );
    assert!(!ok);
    assert!(one_line(&stderr).contains("API_KEY_HASH_SECRET is invalid"));

    let secret = ("API_KEY_HASH_SECRET", "cli-test-secret-0123456789");
    let (ok, _, stderr) = run(
        &["serve"],
        &[secret, ("DATABASE_URL", "mysql://nowhere/db")],
    );
    assert!(!ok);
    assert!(one_line(&stderr).contains("DATABASE_URL"), "{stderr}");

    // An unreachable PostgreSQL is named, its password never.
    let (ok, _, stderr) = run(
        &["serve"],
        &[
            secret,
            (
                "DATABASE_URL",
                "postgres://ew:hunter2-secret@nowhere.invalid/db",
            ),
        ],
    );
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains("postgres://ew@nowhere.invalid:5432/db cannot be reached"),
        "{stderr}"
    );
    assert!(!line.contains("hunter2"), "{stderr}");

    let (ok, _, stderr) = run(
        &["serve"],
        &[
            secret,
            ("DATABASE_URL", &db),
            ("ERRORWATCH_BIND", "localhost"),
        ],
    );
    assert!(!ok);
    assert!(one_line(&stderr).contains("ERRORWATCH_BIND"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let (ok, _, stderr) = run(
        &["serve", "--create-database"],
        &[secret, ("DATABASE_URL", &db), ("ERRORWATCH_BIND", &address)],
    );
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains("cannot listen on") && line.contains(&address),
        "{line}"
    );
    // The database it created was closed before the process stopped: no write-ahead log or
    // shared-memory file was left behind.
    let path = db.trim_start_matches("sqlite://");
    for suffix in ["-wal", "-shm", ""] {
        let file = format!("{path}{suffix}");
        let left = std::path::Path::new(&file).exists();
        let _ = std::fs::remove_file(&file);
        assert!(!left || suffix.is_empty(), "{file} was left behind");
    }
}

#[test]
fn project_create_prints_the_key_last_and_migrate_runs() {
    let path = format!(
        "{}/ew-cli-create-{}.db",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let db = format!("sqlite://{path}");
    let secret = ("API_KEY_HASH_SECRET", "cli-test-secret-0123456789");
    let (ok, stdout, _) = run(&["migrate"], &[("DATABASE_URL", &db)]);
    assert!(ok && stdout.contains("migrations applied"));
    let (ok, stdout, _) = run(
        &["project", "create", "shop"],
        &[secret, ("DATABASE_URL", &db)],
    );
    assert!(ok);
    let key = stdout.lines().last().unwrap_or_default();
    assert!(key.starts_with("ew_live_") && key.len() == 40, "{stdout}");
    let (ok, stdout, _) = run(
        &["project", "create", "shop2", "--json"],
        &[secret, ("DATABASE_URL", &db)],
    );
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(json["name"], "shop2");
    assert!(json["api_key"]
        .as_str()
        .is_some_and(|k| k.starts_with("ew_live_")));
    let (ok, _, stderr) = run(&["project", "create", "x"], &[("DATABASE_URL", &db)]);
    assert!(!ok && one_line(&stderr).contains("API_KEY_HASH_SECRET"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}

#[test]
fn startup_never_creates_a_database_silently_and_names_the_cause() {
    let dir = std::env::temp_dir().join(format!("ew-cli-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("errorwatch.db");
    let db = format!("sqlite://{}", path.display());
    let secret = ("API_KEY_HASH_SECRET", "cli-test-secret-0123456789");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr").to_string();
    let bind = ("ERRORWATCH_BIND", busy.as_str());

    // A missing file: named, with the way to create it, and nothing created.
    for args in [&["serve"][..], &["project", "create", "x"][..]] {
        let (ok, _, stderr) = run(args, &[secret, bind, ("DATABASE_URL", &db)]);
        assert!(!ok);
        let line = one_line(&stderr);
        assert!(
            line.contains(&path.display().to_string())
                && line.contains("does not exist")
                && line.contains("migrate"),
            "{line}"
        );
        assert!(!path.exists(), "{args:?} created the database");
    }

    // A missing directory is named as such.
    let nowhere = format!("sqlite://{}/no-such-dir/errorwatch.db", dir.display());
    let (ok, _, stderr) = run(&["migrate"], &[("DATABASE_URL", &nowhere)]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains("no-such-dir") && line.contains("directory"),
        "{line}"
    );

    // A directory where the file should be.
    let (ok, _, stderr) = run(
        &["serve"],
        &[
            secret,
            bind,
            ("DATABASE_URL", &format!("sqlite://{}", dir.display())),
        ],
    );
    assert!(!ok);
    assert!(one_line(&stderr).contains("directory"), "{stderr}");

    // A read-only database: refused at startup, with the cause, rather than serving 503s.
    let (ok, _, _) = run(&["migrate"], &[("DATABASE_URL", &db)]);
    assert!(ok);
    let read_only = format!("{db}?mode=ro");
    let (ok, _, stderr) = run(&["serve"], &[secret, bind, ("DATABASE_URL", &read_only)]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains(&path.display().to_string()) && line.contains("read-only"),
        "{line}"
    );

    // Explicit creation works.
    let fresh = dir.join("fresh.db");
    let (ok, _, stderr) = run(
        &["serve", "--create-database"],
        &[
            secret,
            bind,
            ("DATABASE_URL", &format!("sqlite://{}", fresh.display())),
        ],
    );
    assert!(
        !ok && one_line(&stderr).contains("cannot listen on"),
        "{stderr}"
    );
    assert!(fresh.exists(), "--create-database creates the file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `BIN` as a user that file permissions apply to: itself when not root; as root, `nobody`
/// through `setpriv`. `None` when neither can run it here.
fn unprivileged() -> Option<Command> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root {
        return Some(Command::new(BIN));
    }
    let as_nobody = || {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        command
    };
    let runs = as_nobody()
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    runs.then(as_nobody)
}

#[test]
fn unwritable_databases_are_refused_with_their_cause() {
    use std::os::unix::fs::PermissionsExt;
    let Some(_) = unprivileged() else {
        eprintln!("skipped: no unprivileged user can run the binary here");
        return;
    };
    let dir = std::env::temp_dir().join(format!("ew-cli-perms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("errorwatch.db");
    let db = format!("sqlite://{}", path.display());
    let (ok, _, _) = run(&["migrate"], &[("DATABASE_URL", &db)]);
    assert!(ok);
    let _ = std::fs::remove_file(format!("{}-wal", path.display()));
    let _ = std::fs::remove_file(format!("{}-shm", path.display()));
    let serve = |env: &[(&str, &str)]| {
        let mut command = unprivileged().expect("checked above");
        command
            .arg("serve")
            .env("API_KEY_HASH_SECRET", "cli-test-secret-0123456789")
            .env("ERRORWATCH_BIND", "127.0.0.1:1")
            .env("RUST_LOG", "off");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().expect("the binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };

    // A file the server may read but not write.
    mode(&dir, 0o777);
    mode(&path, 0o444);
    let (ok, stderr) = serve(&[("DATABASE_URL", &db)]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains(&path.display().to_string()) && line.contains("permission denied"),
        "{line}"
    );

    // A writable file in a directory where SQLite cannot create its -wal and -shm files.
    for sidecar in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{sidecar}", path.display()));
    }
    mode(&path, 0o666);
    mode(&dir, 0o555);
    let (ok, stderr) = serve(&[("DATABASE_URL", &db)]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains(&dir.display().to_string()) && line.contains("not writable"),
        "{line}"
    );
    mode(&dir, 0o755);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_shm_file_is_refused_before_sqlite_maps_it() {
    let dir = std::env::temp_dir().join(format!("ew-cli-shm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("errorwatch.db");
    let db = format!("sqlite://{}", path.display());
    let (ok, _, _) = run(&["migrate"], &[("DATABASE_URL", &db)]);
    assert!(ok);
    let shm = dir.join("errorwatch.db-shm");
    // The size of a live index, so SQLite would map it rather than grow it.
    std::fs::write(&shm, vec![0u8; 32 * 1024]).expect("shm");
    // Immutable where the file system allows it (root on ext4); else read-only for a user
    // that permissions apply to.
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&shm)
        .status()
        .is_ok_and(|s| s.success());
    let command = if immutable {
        Some(Command::new(BIN))
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o444));
        unprivileged()
    };
    let Some(mut command) = command else {
        eprintln!("skipped: cannot make a -shm file unwritable here");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let output = command
        .arg("serve")
        .env("DATABASE_URL", &db)
        .env("API_KEY_HASH_SECRET", "cli-test-secret-0123456789")
        .env("ERRORWATCH_BIND", "127.0.0.1:1")
        .env("RUST_LOG", "off")
        .output()
        .expect("the binary runs");
    if immutable {
        let _ = Command::new("chattr").arg("-i").arg(&shm).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!output.status.success());
    // Refused with a reason, not killed by a signal.
    assert!(output.status.code().is_some(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(one_line(&stderr).contains("errorwatch.db-shm"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_unique_and_keys_can_be_listed_added_and_revoked() {
    let dir = std::env::temp_dir().join(format!("ew-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    keys_and_projects(format!("sqlite://{}", dir.join("errorwatch.db").display())).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_postgres_and_a_missing_database_is_named() {
    let db = support::postgres::Cluster::shared().new_database_url();
    let secret = ("API_KEY_HASH_SECRET", "cli-test-secret-0123456789");
    // `serve` never creates a database; `migrate` does.
    let (ok, _, stderr) = run(&["serve"], &[secret, ("DATABASE_URL", &db)]);
    assert!(!ok);
    let line = one_line(&stderr);
    let name = db.rsplit('/').next().unwrap_or_default();
    assert!(
        line.contains("the database postgres://postgres@127.0.0.1:")
            && line.contains(&format!("/{name} does not exist")),
        "{line}"
    );
    keys_and_projects(db).await;
}

/// Migrate, create projects (unique names), list, add, revoke and list keys, then check that a
/// server on the store takes the new key only.
async fn keys_and_projects(db: String) {
    let secret = ("API_KEY_HASH_SECRET", "cli-test-secret-0123456789");
    let database = ("DATABASE_URL", db.as_str());
    let json = |stdout: &str| -> serde_json::Value { serde_json::from_str(stdout).expect("JSON") };
    assert!(run(&["migrate"], &[database]).0);

    let (ok, stdout, _) = run(
        &["project", "create", "shop", "--json"],
        &[secret, database],
    );
    assert!(ok);
    let first_key = json(&stdout)["api_key"].as_str().expect("key").to_owned();
    // A second project of the same name is refused, naming the first.
    let (ok, _, stderr) = run(&["project", "create", "shop"], &[secret, database]);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(
        line.contains("\"shop\" exists already") && line.contains("id 1"),
        "{line}"
    );

    let (ok, stdout, _) = run(&["project", "list", "--json"], &[database]);
    assert!(ok);
    let projects = json(&stdout)["projects"]
        .as_array()
        .cloned()
        .expect("projects");
    assert_eq!(projects.len(), 1);
    assert_eq!(
        (
            projects[0]["name"].as_str(),
            projects[0]["liveKeys"].as_i64()
        ),
        (Some("shop"), Some(1))
    );

    // Rotation: add a key, then revoke the first.
    let (ok, stdout, _) = run(
        &["key", "create", "--project", "1", "--json"],
        &[secret, database],
    );
    assert!(ok);
    let second_key = json(&stdout)["api_key"].as_str().expect("key").to_owned();
    let (ok, stdout, _) = run(&["key", "revoke", "1"], &[database]);
    assert!(ok && stdout.contains("revoked key 1"), "{stdout}");
    let (ok, stdout, _) = run(&["key", "revoke", "1"], &[database]);
    assert!(ok && stdout.contains("revoked already"), "{stdout}");
    let (ok, _, stderr) = run(&["key", "revoke", "99"], &[database]);
    assert!(
        !ok && one_line(&stderr).contains("no API key has id 99"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["key", "create", "--project", "7"], &[secret, database]);
    assert!(
        !ok && one_line(&stderr).contains("no project has id 7"),
        "{stderr}"
    );

    let (ok, stdout, _) = run(&["key", "list", "--json"], &[database]);
    assert!(ok);
    let keys = json(&stdout)["keys"].as_array().cloned().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(keys[0]["revokedAt"].is_string() && keys[1]["revokedAt"].is_null());
    assert!(
        !stdout.contains(&first_key) && !stdout.contains(&second_key),
        "a listing never shows a key"
    );
    assert!(second_key.starts_with(keys[1]["prefix"].as_str().expect("prefix")));

    // A server on this store takes the new key and refuses the revoked one.
    let mut config = errorwatch_server::Config::for_tests(secret.1);
    config.database_url = db.clone();
    config.create_database = false;
    let server = errorwatch_server::Server::start(config)
        .await
        .expect("server");
    let http = reqwest::Client::new();
    let post = |key: String| {
        http.post(format!("{}/api/v1/event", server.url()))
            .header("X-API-Key", key)
            .body(r#"{"message":"rotated","sdk":{"name":"t","version":"1"}}"#)
            .send()
    };
    assert_eq!(
        post(second_key).await.expect("answer").status().as_u16(),
        202
    );
    assert_eq!(
        post(first_key).await.expect("answer").status().as_u16(),
        401
    );
    server.shutdown().await;

    // The stored issue, as a terminal table and as JSON.
    let (ok, stdout, stderr) = run(&["issues"], &[database]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("STATUS") && lines[0].ends_with("ISSUE"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("unresolved   error") && lines[1].ends_with("ERROR: rotated"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&["issues", "--status", "resolved", "--json"], &[database]);
    assert!(ok);
    assert_eq!(json(&stdout)["total"], 0);
    let (ok, stdout, _) = run(
        &[
            "issues",
            "--status",
            "all",
            "--project",
            "1",
            "--limit",
            "5",
            "--json",
        ],
        &[database],
    );
    assert!(ok);
    assert_eq!(json(&stdout)["issues"][0]["title"], "ERROR: rotated");
    for bad in [["--status", "closed"], ["--limit", "0"], ["--project", "x"]] {
        let (ok, _, stderr) = run(&["issues", bad[0], bad[1]], &[database]);
        assert!(!ok, "{bad:?}");
        assert!(
            stderr.contains(bad[0]) && stderr.contains(bad[1]),
            "{bad:?} named: {stderr}"
        );
    }
}
