//! What the SQLite store's unit tests share.

use std::path::{Path, PathBuf};

use crate::store::NewEvent;

/// A directory of one test's own, removed when dropped.
pub(super) struct ScratchDir(PathBuf);

impl ScratchDir {
    pub(super) fn new(name: &str) -> ScratchDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("ew-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        ScratchDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An event of `project_id`'s one group, with `key` as its id and duplicate key, received at
/// `at`.
pub(super) fn event(project_id: i64, key: &str, at: i64) -> NewEvent {
    NewEvent {
        project_id,
        fingerprint: "f".repeat(64),
        title: "TestError: boom".into(),
        event_id: Some(key.into()),
        received_at: at,
        created_at: at,
        level: "error".into(),
        env: "test".into(),
        release: None,
        message: None,
        error_type: Some("TestError".into()),
        error_value: Some("boom".into()),
        grouping_rule: "exception",
        stack: String::new(),
        file: "src/lib.rs".into(),
        line: 7,
        user_id: Some("u1".into()),
        url: None,
        status_code: None,
        payload: "{}".into(),
        dedupe_key: key.into(),
        seen_at: at,
        daily_quota: None,
    }
}
