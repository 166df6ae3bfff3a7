-- The duplicate windows as a log appended in time order (see `store/sqlite/windows.rs`): keyed
-- by their text, each new window landed in a random page of the table, and the pages a batch
-- touched there were half of what its commit wrote.
CREATE TABLE dedupe_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
INSERT INTO dedupe_log (key, started_at)
    SELECT key, started_at FROM dedupe_windows ORDER BY started_at;
DROP TABLE dedupe_windows;
