//! The PostgreSQL backend: one database that several servers share, through sqlx.
//!
//! Every connection commits synchronously (`synchronous_commit = on`, whatever the server's
//! default), so a committed batch is on PostgreSQL's disk before any event of it is
//! acknowledged. A batch is a handful of statements whatever its size: each step of
//! [`batch::write`] is one statement over arrays (`UNNEST`), its rows taken in key order.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};

use errorwatch_protocol::validate::{CheckIn, CheckInStatus, LogEntry};

use super::batch::{self, BatchTx, GroupUpdate, Outcome, ValueSeen, WINDOW_MS};
use super::{
    new_checkin_id, rfc3339, ApiKey, Dialect, Group, GroupQuery, HourCount, NewEvent, OpenOptions,
    Project, ProjectAuth, SeenValue, StoreError, StoredEvent, EVENT_COLUMNS, GROUP_COLUMNS,
};

/// PostgreSQL's codes for a database that does not exist and for a unique violation.
const UNDEFINED_DATABASE: &str = "3D000";
const UNIQUE_VIOLATION: &str = "23505";

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub(super) struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub(super) async fn open(url: &str, options: &OpenOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl {
            url: super::redact_url(url),
            reason: e.to_string(),
        })?;
        let database = describe(&connect);
        let unreachable = |e: &dyn std::fmt::Display| StoreError::Unreachable {
            database: database.clone(),
            cause: e.to_string(),
        };
        // An acknowledged event must be on disk, whatever the database's default says.
        let connect = connect.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.unwrap_or(10).max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(connect);
        match pool.acquire().await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_DATABASE) => {
                if !options.create_if_missing {
                    return Err(StoreError::MissingDatabase { database });
                }
                Postgres::create_database(url)
                    .await
                    .map_err(|e| unreachable(&e))?;
            }
            Err(e) => return Err(unreachable(&e)),
        }
        // Several servers may start at once: sqlx's migrator holds an advisory lock.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = PostgresStore { pool };
        store
            .probe_write(chrono::Utc::now().timestamp_millis())
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(store)
    }

    async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx(self.pool.begin().await?))
    }

    pub(super) async fn probe_write(&self, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO write_probe (written_at, filler) VALUES ($1, '\\x00'::bytea)")
            .bind(now)
            .execute(&mut *tx.0)
            .await?;
        sqlx::query("DELETE FROM write_probe")
            .execute(&mut *tx.0)
            .await?;
        tx.0.commit().await?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(super) async fn create_project(
        &self,
        name: &str,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(now)
        .fetch_optional(&mut *tx.0)
        .await?;
        let Some(row) = inserted else {
            let id: i64 = sqlx::query("SELECT id FROM projects WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx.0)
                .await?
                .try_get(0)?;
            return Err(StoreError::Conflict(format!(
                "a project named {name:?} exists already (id {id})"
            )));
        };
        let id: i64 = row.try_get(0)?;
        insert_key(&mut tx.0, id, key_hash, key_prefix, now).await?;
        tx.0.commit().await?;
        Ok(id)
    }

    pub(super) async fn projects(&self) -> Result<Vec<Project>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.created_at, p.ingestion_enabled, p.sample_rate, p.daily_quota, \
             (SELECT count(*) FROM api_keys k WHERE k.project_id = p.id AND k.revoked_at IS NULL) \
             FROM projects p ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Project {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    created_at: rfc3339(row.try_get(2)?),
                    ingestion_enabled: row.try_get(3)?,
                    sample_rate: row.try_get(4)?,
                    daily_quota: row.try_get(5)?,
                    live_keys: row.try_get(6)?,
                })
            })
            .collect()
    }

    pub(super) async fn api_keys(&self, project: Option<i64>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, project_id, key_prefix, created_at, revoked_at FROM api_keys \
             WHERE $1::bigint IS NULL OR project_id = $1 ORDER BY id",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ApiKey {
                    id: row.try_get(0)?,
                    project_id: row.try_get(1)?,
                    prefix: row.try_get(2)?,
                    created_at: rfc3339(row.try_get(3)?),
                    revoked_at: row.try_get::<Option<i64>, _>(4)?.map(rfc3339),
                })
            })
            .collect()
    }

    pub(super) async fn add_api_key(
        &self,
        project_id: i64,
        key_hash: &str,
        key_prefix: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM projects WHERE id = $1 FOR SHARE")
            .bind(project_id)
            .fetch_optional(&mut *tx.0)
            .await?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound(format!(
                "no project has id {project_id}"
            )));
        }
        let id = insert_key(&mut tx.0, project_id, key_hash, key_prefix, now).await?;
        tx.0.commit().await?;
        Ok(id)
    }

    pub(super) async fn revoke_api_key(&self, key_id: i64, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let revoked_at: Option<Option<i64>> =
            sqlx::query("SELECT revoked_at FROM api_keys WHERE id = $1 FOR UPDATE")
                .bind(key_id)
                .fetch_optional(&mut *tx.0)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        match revoked_at {
            None => Err(StoreError::NotFound(format!("no API key has id {key_id}"))),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(key_id)
                    .execute(&mut *tx.0)
                    .await?;
                tx.0.commit().await?;
                Ok(true)
            }
        }
    }

    pub(super) async fn update_project(
        &self,
        project_id: i64,
        ingestion_enabled: bool,
        sample_rate: f64,
        daily_quota: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE projects SET ingestion_enabled = $1, sample_rate = $2, daily_quota = $3 \
             WHERE id = $4",
        )
        .bind(ingestion_enabled)
        .bind(sample_rate)
        .bind(daily_quota)
        .bind(project_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn all_keys(&self) -> Result<Vec<ProjectAuth>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.key_hash, p.id, p.ingestion_enabled, p.sample_rate, p.daily_quota \
             FROM api_keys k JOIN projects p ON p.id = k.project_id WHERE k.revoked_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ProjectAuth {
                    key_hash: row.try_get(0)?,
                    project_id: row.try_get(1)?,
                    ingestion_enabled: row.try_get(2)?,
                    sample_rate: row.try_get(3)?,
                    daily_quota: row.try_get(4)?,
                })
            })
            .collect()
    }

    pub(super) async fn write_batch(
        &self,
        events: &[NewEvent],
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut tx = self.begin().await?;
        let outcomes = batch::write(&mut tx, events).await?;
        tx.0.commit().await?;
        Ok(outcomes)
    }

    pub(super) async fn claim_task(
        &self,
        task: &str,
        now: i64,
        every: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "INSERT INTO maintenance AS m (task, last_run) VALUES ($1, $2) \
             ON CONFLICT (task) DO UPDATE SET last_run = excluded.last_run \
             WHERE m.last_run <= excluded.last_run - $3 RETURNING task",
        )
        .bind(task)
        .bind(now)
        .bind(every)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    pub(super) async fn expire_windows(&self, cutoff: i64) -> Result<u64, StoreError> {
        let windows = sqlx::query("DELETE FROM dedupe_windows WHERE started_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        let rates = sqlx::query("DELETE FROM rate_windows WHERE window_start < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(windows.rows_affected() + rates.rows_affected())
    }

    pub(super) async fn take_rate_lease(
        &self,
        client: &str,
        window: i64,
        want: i64,
        limit: i64,
    ) -> Result<(i64, i64), StoreError> {
        let mut tx = self.begin().await?;
        // A lost count only forgets part of a minute: not worth a disk flush per lease.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx.0)
            .await?;
        let used: i64 = sqlx::query(
            "INSERT INTO rate_windows AS r (client, window_start, used) VALUES ($1, $2, 0) \
             ON CONFLICT (client, window_start) DO UPDATE SET used = r.used RETURNING used",
        )
        .bind(client)
        .bind(window)
        .fetch_one(&mut *tx.0)
        .await?
        .try_get(0)?;
        let granted = want.min(limit - used).max(0);
        if granted > 0 {
            sqlx::query(
                "UPDATE rate_windows SET used = used + $3 WHERE client = $1 AND window_start = $2",
            )
            .bind(client)
            .bind(window)
            .bind(granted)
            .execute(&mut *tx.0)
            .await?;
        }
        tx.0.commit().await?;
        Ok((granted, used + granted))
    }

    pub(super) async fn groups(&self, query: &GroupQuery) -> Result<(Vec<Group>, i64), StoreError> {
        let (list_sql, count_sql) = query.sql(&Dialect {
            placeholder: |n| format!("${n}"),
            position: "strpos",
        });
        macro_rules! bind_filters {
            ($q:expr) => {{
                let mut q = $q;
                if let Some(project) = query.project {
                    q = q.bind(project);
                }
                for value in query.text_filters() {
                    q = q.bind(value);
                }
                q
            }};
        }
        let rows = bind_filters!(sqlx::query(&list_sql))
            .bind(query.limit)
            .bind((query.page - 1) * query.limit)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = bind_filters!(sqlx::query(&count_sql))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let groups = rows.iter().map(group_from_row).collect::<Result<_, _>>()?;
        Ok((groups, total))
    }

    pub(super) async fn group(&self, fingerprint: &str) -> Result<Option<Group>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups WHERE fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    pub(super) async fn group_events(
        &self,
        fingerprint: &str,
        page: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE fingerprint = $1 ORDER BY id DESC \
             LIMIT $2 OFFSET $3"
        ))
        .bind(fingerprint)
        .bind(limit)
        .bind((page - 1) * limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn group_event_count(&self, fingerprint: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT count(*) FROM events WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    pub(super) async fn activity(
        &self,
        fingerprints: &[String],
        since_hour: i64,
    ) -> Result<Vec<HourCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, hour, count FROM group_hours \
             WHERE fingerprint = ANY($1) AND hour >= $2",
        )
        .bind(fingerprints)
        .bind(since_hour)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hour_count_from_row).collect()
    }

    pub(super) async fn seen_values(
        &self,
        fingerprint: &str,
    ) -> Result<Vec<SeenValue>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, value, count, last_seen FROM group_values WHERE fingerprint = $1 \
             ORDER BY kind, last_seen DESC",
        )
        .bind(fingerprint)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(seen_value_from_row).collect()
    }

    pub(super) async fn events(&self, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    pub(super) async fn set_status(
        &self,
        fingerprint: &str,
        status: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE groups SET status = $1, \
             resolved_at = CASE WHEN $1 = 'resolved' THEN $2 ELSE NULL END \
             WHERE fingerprint = $3",
        )
        .bind(status)
        .bind(now)
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub(super) async fn purge_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut purged = 0;
        for sql in [
            "DELETE FROM events WHERE received_at < $1",
            "DELETE FROM logs WHERE received_at < $1",
            "DELETE FROM cron_checkins WHERE created_at < $1",
        ] {
            purged += sqlx::query(sql)
                .bind(cutoff)
                .execute(&mut *tx.0)
                .await?
                .rows_affected();
        }
        sqlx::query("DELETE FROM group_hours WHERE hour < $1")
            .bind(cutoff.div_euclid(batch::HOUR_MS))
            .execute(&mut *tx.0)
            .await?;
        tx.0.commit().await?;
        Ok(purged)
    }

    pub(super) async fn write_log(
        &self,
        project_id: i64,
        entry: &LogEntry,
        received_at: i64,
    ) -> Result<i64, StoreError> {
        let json = |value: &serde_json::Value| (!value.is_null()).then(|| value.to_string());
        Ok(sqlx::query(
            "INSERT INTO logs (project_id, created_at, received_at, level, channel, message, source, \
             env, release, url, request_id, user_id, trace_id, span_id, context, extra) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING id",
        )
        .bind(project_id)
        .bind(entry.created_at_ms)
        .bind(received_at)
        .bind(&entry.level)
        .bind(&entry.channel)
        .bind(&entry.message)
        .bind(&entry.source)
        .bind(&entry.env)
        .bind(&entry.release)
        .bind(&entry.url)
        .bind(&entry.request_id)
        .bind(&entry.user_id)
        .bind(&entry.trace_id)
        .bind(&entry.span_id)
        .bind(json(&entry.context))
        .bind(json(&entry.extra))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    pub(super) async fn logs(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, project_id, created_at, level, channel, message, source, env, release, url, \
             request_id, user_id, trace_id, span_id, context, extra FROM logs \
             WHERE $1::bigint IS NULL OR project_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(project)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_json).collect()
    }

    pub(super) async fn check_in(
        &self,
        project_id: i64,
        check_in: &CheckIn,
        now: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO cron_monitors (project_id, slug, env, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, slug) DO NOTHING",
        )
        .bind(project_id)
        .bind(&check_in.slug)
        .bind(&check_in.env)
        .bind(now)
        .execute(&mut *tx.0)
        .await?;
        // Locked, so two servers' check-ins of one job are recorded one after the other.
        let monitor_id: i64 = sqlx::query(
            "SELECT id FROM cron_monitors WHERE project_id = $1 AND slug = $2 FOR UPDATE",
        )
        .bind(project_id)
        .bind(&check_in.slug)
        .fetch_one(&mut *tx.0)
        .await?
        .try_get(0)?;
        let status = check_in.status.as_str();
        let payload = check_in.payload.as_ref().map(serde_json::Value::to_string);
        let started = match (check_in.status, &check_in.checkin_id) {
            (CheckInStatus::InProgress, _) | (_, None) => None,
            (_, Some(checkin_id)) => sqlx::query(
                "SELECT id, started_at FROM cron_checkins \
                 WHERE monitor_id = $1 AND checkin_id = $2 AND status = 'in_progress' LIMIT 1",
            )
            .bind(monitor_id)
            .bind(checkin_id)
            .fetch_optional(&mut *tx.0)
            .await?
            .map(|row| -> Result<(i64, Option<i64>), StoreError> {
                Ok((row.try_get(0)?, row.try_get(1)?))
            })
            .transpose()?,
        };
        let id: i64 = match started {
            Some((id, started_at)) => {
                let duration = check_in.duration.or_else(|| started_at.map(|at| now - at));
                sqlx::query(
                    "UPDATE cron_checkins SET status = $1, duration = $2, finished_at = $3, \
                     payload = coalesce($4, payload) WHERE id = $5",
                )
                .bind(status)
                .bind(duration)
                .bind(now)
                .bind(&payload)
                .bind(id)
                .execute(&mut *tx.0)
                .await?;
                id
            }
            None => {
                let in_progress = check_in.status == CheckInStatus::InProgress;
                let checkin_id = if in_progress {
                    Some(check_in.checkin_id.clone().unwrap_or_else(new_checkin_id))
                } else {
                    check_in.checkin_id.clone()
                };
                sqlx::query(
                    "INSERT INTO cron_checkins (monitor_id, status, checkin_id, duration, env, \
                     payload, started_at, finished_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(monitor_id)
                .bind(status)
                .bind(checkin_id)
                .bind(check_in.duration)
                .bind(&check_in.env)
                .bind(&payload)
                .bind(in_progress.then_some(now))
                .bind((!in_progress).then_some(now))
                .bind(now)
                .fetch_one(&mut *tx.0)
                .await?
                .try_get(0)?
            }
        };
        sqlx::query(
            "UPDATE cron_monitors SET last_checkin_at = $1, last_status = $2 WHERE id = $3",
        )
        .bind(now)
        .bind(status)
        .bind(monitor_id)
        .execute(&mut *tx.0)
        .await?;
        let row = sqlx::query(
            "SELECT id, monitor_id, status, duration, env, checkin_id, payload, started_at, \
             finished_at, created_at FROM cron_checkins WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx.0)
        .await?;
        tx.0.commit().await?;
        checkin_json(&row)
    }

    pub(super) async fn checkins(
        &self,
        project: Option<i64>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.monitor_id, c.status, c.duration, c.env, c.checkin_id, c.payload, \
             c.started_at, c.finished_at, c.created_at, m.slug, m.project_id \
             FROM cron_checkins c JOIN cron_monitors m ON m.id = c.monitor_id \
             WHERE $1::bigint IS NULL OR m.project_id = $1 ORDER BY c.id DESC LIMIT $2",
        )
        .bind(project)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut checkin = checkin_json(row)?;
                checkin["slug"] = row.try_get::<String, _>(10)?.into();
                checkin["projectId"] = row.try_get::<i64, _>(11)?.into();
                Ok(checkin)
            })
            .collect()
    }

    pub(super) async fn close(&self) {
        super::close_pool(&self.pool).await;
    }
}

/// One column of a batch, as the array an `UNNEST` reads.
macro_rules! column {
    ($rows:expr, |$row:ident| $value:expr) => {
        $rows.iter().map(|$row| $value).collect::<Vec<_>>()
    };
}

/// A write transaction; dropped without a commit, sqlx rolls it back.
struct PgTx(Transaction<'static, Postgres>);

impl BatchTx for PgTx {
    async fn open_windows(&mut self, keys: &[(&str, i64)]) -> Result<HashSet<String>, StoreError> {
        let (names, times): (Vec<&str>, Vec<i64>) = keys.iter().copied().unzip();
        let rows = sqlx::query(
            "INSERT INTO dedupe_windows AS w (key, started_at) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[]) \
             ON CONFLICT (key) DO UPDATE SET started_at = excluded.started_at \
             WHERE w.started_at <= excluded.started_at - $3 RETURNING key",
        )
        .bind(names)
        .bind(times)
        .bind(WINDOW_MS)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    async fn close_windows(&mut self, keys: &[&str]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dedupe_windows WHERE key = ANY($1)")
            .bind(keys)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn quota_used(&mut self, project_id: i64, day: i64) -> Result<i64, StoreError> {
        let select = "SELECT used FROM quota_usage WHERE project_id = $1 AND day = $2 FOR UPDATE";
        let used = sqlx::query(select)
            .bind(project_id)
            .bind(day)
            .fetch_optional(&mut *self.0)
            .await?;
        if let Some(row) = used {
            return Ok(row.try_get(0)?);
        }
        // A day first seen counts what it stored; a server that counts it at the same moment
        // loses the insert and reads the winner's row.
        sqlx::query(
            "INSERT INTO quota_usage (project_id, day, used) \
             SELECT $1, $2, count(*) FROM events WHERE project_id = $1 AND received_at >= $2 * 86400000 \
             ON CONFLICT DO NOTHING",
        )
        .bind(project_id)
        .bind(day)
        .execute(&mut *self.0)
        .await?;
        Ok(sqlx::query(select)
            .bind(project_id)
            .bind(day)
            .fetch_one(&mut *self.0)
            .await?
            .try_get(0)?)
    }

    async fn add_usage(
        &mut self,
        project_id: i64,
        day: i64,
        stored: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE quota_usage SET used = used + $3 WHERE project_id = $1 AND day = $2")
            .bind(project_id)
            .bind(day)
            .bind(stored)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn upsert_groups(&mut self, groups: &[GroupUpdate<'_>]) -> Result<(), StoreError> {
        sqlx::query(
            // Title, level, file and line are the first event's; type and value are
            // back-filled by the first event that has them.
            "INSERT INTO groups AS g (fingerprint, project_id, title, error_type, error_value, \
             grouping_rule, level, status, count, users_affected, first_seen, last_seen, file, line, env) \
             SELECT f, p, t, et, ev, r, l, 'unresolved', c, 0, fs, ls, fi, li, e FROM UNNEST(\
               $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
               $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::text[]) \
             AS u(f, p, t, et, ev, r, l, c, fs, ls, fi, li, e) \
             ON CONFLICT (fingerprint) DO UPDATE SET \
               count = g.count + excluded.count, \
               error_type = coalesce(g.error_type, excluded.error_type), \
               error_value = coalesce(g.error_value, excluded.error_value), \
               env = excluded.env, \
               first_seen = least(g.first_seen, excluded.first_seen), \
               last_seen = greatest(g.last_seen, excluded.last_seen), \
               regressed_at = CASE WHEN g.status = 'resolved' THEN excluded.last_seen ELSE g.regressed_at END, \
               status = CASE WHEN g.status = 'ignored' THEN g.status ELSE 'unresolved' END",
        )
        .bind(column!(groups, |g| g.first.fingerprint.as_str()))
        .bind(column!(groups, |g| g.first.project_id))
        .bind(column!(groups, |g| g.first.title.as_str()))
        .bind(column!(groups, |g| g.error_type))
        .bind(column!(groups, |g| g.error_value))
        .bind(column!(groups, |g| g.first.grouping_rule))
        .bind(column!(groups, |g| g.first.level.as_str()))
        .bind(column!(groups, |g| g.count))
        .bind(column!(groups, |g| g.first_seen))
        .bind(column!(groups, |g| g.last_seen))
        .bind(column!(groups, |g| g.first.file.as_str()))
        .bind(column!(groups, |g| g.first.line))
        .bind(column!(groups, |g| g.env))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn add_users(&mut self, pairs: &[(&str, &str)]) -> Result<(), StoreError> {
        let (fingerprints, users): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
        sqlx::query(
            "WITH added AS (\
               INSERT INTO group_users (fingerprint, user_id) \
               SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING \
               RETURNING fingerprint) \
             UPDATE groups g SET users_affected = g.users_affected + a.n \
             FROM (SELECT fingerprint, count(*) AS n FROM added GROUP BY fingerprint) a \
             WHERE g.fingerprint = a.fingerprint",
        )
        .bind(fingerprints)
        .bind(users)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn add_hours(&mut self, hours: &[(&str, i64, i64)]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_hours AS h (fingerprint, hour, count) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) \
             ON CONFLICT (fingerprint, hour) DO UPDATE SET count = h.count + excluded.count",
        )
        .bind(column!(hours, |h| h.0))
        .bind(column!(hours, |h| h.1))
        .bind(column!(hours, |h| h.2))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn add_values(&mut self, values: &[ValueSeen<'_>]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO group_values AS v (fingerprint, kind, value, count, last_seen) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
             ON CONFLICT (fingerprint, kind, value) DO UPDATE SET \
               count = v.count + excluded.count, last_seen = greatest(v.last_seen, excluded.last_seen)",
        )
        .bind(column!(values, |v| v.fingerprint))
        .bind(column!(values, |v| v.kind))
        .bind(column!(values, |v| v.value))
        .bind(column!(values, |v| v.count))
        .bind(column!(values, |v| v.last_seen))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_events(&mut self, events: &[&NewEvent]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO events (event_id, project_id, fingerprint, received_at, created_at, level, \
             env, release, message, error_type, error_value, stack, file, line, user_id, url, \
             status_code, payload) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
               $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
               $13::text[], $14::bigint[], $15::text[], $16::text[], $17::bigint[], $18::text[])",
        )
        .bind(column!(events, |e| e.event_id.as_deref()))
        .bind(column!(events, |e| e.project_id))
        .bind(column!(events, |e| e.fingerprint.as_str()))
        .bind(column!(events, |e| e.received_at))
        .bind(column!(events, |e| e.created_at))
        .bind(column!(events, |e| e.level.as_str()))
        .bind(column!(events, |e| e.env.as_str()))
        .bind(column!(events, |e| e.release.as_deref()))
        .bind(column!(events, |e| e.message.as_deref()))
        .bind(column!(events, |e| e.error_type.as_deref()))
        .bind(column!(events, |e| e.error_value.as_deref()))
        .bind(column!(events, |e| e.stack.as_str()))
        .bind(column!(events, |e| e.file.as_str()))
        .bind(column!(events, |e| e.line))
        .bind(column!(events, |e| e.user_id.as_deref()))
        .bind(column!(events, |e| e.url.as_deref()))
        .bind(column!(events, |e| e.status_code))
        .bind(column!(events, |e| e.payload.as_str()))
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }
}

/// Inserts a key (given by its hash) of `project_id`; returns the key's id.
async fn insert_key(
    conn: &mut PgConnection,
    project_id: i64,
    key_hash: &str,
    key_prefix: &str,
    now: i64,
) -> Result<i64, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO api_keys (project_id, key_hash, key_prefix, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(project_id)
    .bind(key_hash)
    .bind(key_prefix)
    .bind(now)
    .fetch_one(conn)
    .await;
    match inserted {
        Ok(row) => Ok(row.try_get(0)?),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => Err(
            StoreError::Conflict("this key exists already; generate another".into()),
        ),
        Err(e) => Err(e.into()),
    }
}

super::row_decoders!(PgRow);

/// The database a URL names, without its password: `postgres://user@host:port/name`.
fn describe(connect: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        connect.get_username(),
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or_default()
    )
}
