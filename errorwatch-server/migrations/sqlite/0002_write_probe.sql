-- A scratch table for the write probe: while writes fail (a full disk, a read-only file), the
-- server tries one small transaction a second here, to notice by itself when they succeed again.
CREATE TABLE write_probe (
    written_at INTEGER NOT NULL,
    filler BLOB NOT NULL
);
