//! The warehouse queries, rows to JSON, watermark change detection, and the classification of
//! every database outcome.
//!
//! | outcome | class |
//! |---|---|
//! | cannot connect (refused, DNS, pool wait or connect timeout) | `connect` |
//! | `statement_timeout` (SQLSTATE 57014) | `timeout` |
//! | too many connections (53300) | `throttled` |
//! | credentials refused (28000, 28P01), no privilege (42501) | `unauthorized` |
//! | connection lost or server shutting down (08xxx, 57P01–57P03) | `upstream_5xx` |
//! | a table or column the queries need is missing (42P01, 42703, …) | `internal` (the warehouse schema differs from what this adapter reads) |
//! | the crime reference is unknown | `rejected` |
//! | a row the spec cannot map (unknown code) | `mapping` |
//! | any write | `rejected`: the warehouse is read-only |
//!
//! Messages carry SQLSTATEs, column names and crime references, never row contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use mappings::Mappings;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

use super::config::AthenaDwConfig;
use super::mapping;
use crate::records::{
    CaseRead, ChangeCursor, ChangePage, PreparedWrite, RecordChange, RecordWrite,
};
use crate::{
    AdapterError, DeliveryContext, DeliveryReceipt, ErrorClass, RecordSystem, TargetPayload,
};

/// The crime row.
const CRIME_SQL: &str = "
    SELECT crime_key, crime_ref, force_no, recorded_ts, submission_uuid::text AS submission_uuid,
           ho_offence_cd, offence_desc, crime_status_cd, status_ts, outcome_type_id, outcome_ts,
           oic_officer_key, supv_officer_key, last_modified_ts
    FROM dw_crime WHERE crime_ref = $1";

/// An officer row.
const OFFICER_SQL: &str = "
    SELECT officer_key, officer_no, collar_no, rank_cd, first_nm, last_nm, station_nm
    FROM dw_officer WHERE officer_key = $1";

/// The people on a crime, one row each, with their involvements in order and the people they
/// are the guardian of.
const PARTIES_SQL: &str = "
    SELECT p.person_key, p.src_person_ref, p.first_nms, p.family_nm, p.birth_dt, p.gender_cd,
           p.ethnic_cd, p.under_18_flg, p.contact_pref_cd, p.email_addr, p.phone_no, p.addr_uprn,
           p.addr_bldg_no, p.addr_bldg_nm, p.addr_street, p.addr_town, p.addr_county,
           p.addr_postcode, p.addr_full,
           array_agg(cp.involvement_cd::text ORDER BY cp.role_seq) AS involvement_cds,
           coalesce((SELECT array_agg(w.src_person_ref ORDER BY w.person_key)
                     FROM dw_crime_guardian g JOIN dw_person w ON w.person_key = g.ward_person_key
                     WHERE g.crime_key = cp.crime_key AND g.guardian_person_key = p.person_key),
                    '{}') AS guardian_of_refs
    FROM dw_crime_person cp JOIN dw_person p ON p.person_key = cp.person_key
    WHERE cp.crime_key = $1
    GROUP BY cp.crime_key, p.person_key
    ORDER BY min(cp.party_seq)";

/// The timeline.
const EVENTS_SQL: &str = "
    SELECT event_seq, event_ts, event_type_cd, event_txt
    FROM dw_crime_event WHERE crime_key = $1 ORDER BY event_seq";

/// Changed crimes after a watermark, oldest first, old enough to be settled.
const CHANGES_SQL: &str = "
    SELECT crime_ref, last_modified_ts, crime_key FROM dw_crime
    WHERE (last_modified_ts, crime_key) > ($1::text::timestamptz, $2::bigint)
      AND last_modified_ts <= clock_timestamp() - make_interval(secs => $3::float8)
    ORDER BY last_modified_ts, crime_key
    LIMIT $4";

/// Reads one force's Athena data warehouse. Holds a connection pool; cheap to share.
pub struct AthenaDwClient {
    pool: Pool,
    mappings: Arc<Mappings>,
    lag: Duration,
}

impl std::fmt::Debug for AthenaDwClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AthenaDwClient").finish_non_exhaustive()
    }
}

fn config_error(field: &str, rule: &str) -> AdapterError {
    AdapterError::new(ErrorClass::Internal, format!("athena_dw.{field}: {rule}"))
}

impl AthenaDwClient {
    /// Checks `cfg` and builds the pool (connections are opened when first needed, so a
    /// warehouse that is down does not stop the gateway starting; `health` reports it).
    #[allow(
        clippy::needless_pass_by_value,
        reason = "every adapter takes its configuration by value"
    )]
    pub fn new(cfg: AthenaDwConfig, mappings: Arc<Mappings>) -> Result<Self, AdapterError> {
        let mut pg: tokio_postgres::Config = cfg
            .url
            .trim()
            .parse()
            .map_err(|_| config_error("url", "not a postgres:// URL or connection string"))?;
        if pg.get_password().is_some() {
            return Err(config_error(
                "url",
                "must not contain a password; use password",
            ));
        }
        if pg.get_user().is_none_or(str::is_empty) {
            return Err(config_error("url", "names no user (the read-only role)"));
        }
        if pg.get_dbname().is_none_or(str::is_empty) {
            return Err(config_error("url", "names no database"));
        }
        for (field, value) in [
            ("pool_size", cfg.pool_size as u64),
            ("statement_timeout_ms", cfg.statement_timeout_ms),
            ("connect_timeout_ms", cfg.connect_timeout_ms),
        ] {
            if value == 0 {
                return Err(config_error(field, "must be greater than 0"));
            }
        }
        if let Some(p) = &cfg.password {
            pg.password(p.expose());
        }
        pg.connect_timeout(Duration::from_millis(cfg.connect_timeout_ms));
        pg.application_name("nmpp-gateway");
        // Read-only on our side too, whatever the role may do.
        pg.options(format!(
            "-c statement_timeout={} -c default_transaction_read_only=on -c TimeZone=UTC",
            cfg.statement_timeout_ms
        ));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Duration::from_millis(cfg.connect_timeout_ms);
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| config_error("pool_size", &e.to_string()))?;
        Ok(Self {
            pool,
            mappings,
            lag: Duration::from_millis(cfg.watermark_lag_ms),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, AdapterError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => classify_pg(&e),
            other => AdapterError::new(
                ErrorClass::Connect,
                format!("could not get a warehouse connection: {other}"),
            ),
        })
    }

    /// The row set of one crime, or `None` when the reference is unknown.
    pub async fn rows(&self, crime_reference: &str) -> Result<Option<Value>, AdapterError> {
        let client = self.client().await?;
        let Some(crime) = client
            .query_opt(CRIME_SQL, &[&crime_reference])
            .await
            .map_err(|e| classify_pg(&e))?
        else {
            return Ok(None);
        };
        let crime = row_to_json(&crime)?;
        let key = crime.get("crime_key").and_then(Value::as_i64).unwrap_or(0);
        let mut set = Map::with_capacity(5);
        for (name, column) in [
            ("oic", "oic_officer_key"),
            ("supervisor", "supv_officer_key"),
        ] {
            if let Some(officer_key) = crime.get(column).and_then(Value::as_i64)
                && let Some(row) = client
                    .query_opt(OFFICER_SQL, &[&officer_key])
                    .await
                    .map_err(|e| classify_pg(&e))?
            {
                set.insert(name.to_owned(), Value::Object(row_to_json(&row)?));
            }
        }
        let parties = client
            .query(PARTIES_SQL, &[&key])
            .await
            .map_err(|e| classify_pg(&e))?;
        let events = client
            .query(EVENTS_SQL, &[&key])
            .await
            .map_err(|e| classify_pg(&e))?;
        set.insert("crime".into(), Value::Object(crime));
        set.insert(
            "parties".into(),
            Value::Array(
                parties
                    .iter()
                    .map(|r| row_to_json(r).map(Value::Object))
                    .collect::<Result<_, _>>()?,
            ),
        );
        set.insert(
            "events".into(),
            Value::Array(
                events
                    .iter()
                    .map(|r| row_to_json(r).map(Value::Object))
                    .collect::<Result<_, _>>()?,
            ),
        );
        Ok(Some(Value::Object(set)))
    }
}

fn read_only(what: &str) -> AdapterError {
    AdapterError::new(
        ErrorClass::Rejected,
        format!(
            "athena_dw is read-only: the data warehouse cannot {what}; this needs the force's records system to be type = \"athena\""
        ),
    )
}

#[async_trait]
impl RecordSystem for AthenaDwClient {
    fn name(&self) -> &'static str {
        "athena_dw"
    }

    fn read_only(&self) -> bool {
        true
    }

    fn prepare_crime_record(&self, _nmpp: &Value) -> Result<TargetPayload, AdapterError> {
        Err(read_only("create crime records"))
    }

    async fn create_crime_record(
        &self,
        _payload: &TargetPayload,
        _ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        Err(read_only("create crime records"))
    }

    #[tracing::instrument(name = "athena_dw.read_case", skip_all, fields(adapter = "athena_dw", crime_reference = %crime_reference))]
    async fn read_case(&self, crime_reference: &str) -> Result<CaseRead, AdapterError> {
        let started = Instant::now();
        let rows = self.rows(crime_reference).await?.ok_or_else(|| {
            AdapterError::new(
                ErrorClass::Rejected,
                format!("the warehouse has no crime {crime_reference}"),
            )
        })?;
        let document = mapping::case_record(&self.mappings, &rows)?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "warehouse case read"
        );
        Ok(CaseRead {
            crime_reference: crime_reference.to_owned(),
            document,
            mapping: self.mappings.spec_version(mapping::CASE_SPEC),
        })
    }

    fn prepare_write(&self, write: &RecordWrite) -> Result<PreparedWrite, AdapterError> {
        Err(read_only(match write {
            RecordWrite::VictimContact { .. } => "record victim contacts",
            RecordWrite::OfficerTask { .. } => "create officer tasks",
            RecordWrite::ContactDetails { .. } => "update contact details",
        }))
    }

    async fn write(
        &self,
        _prepared: &PreparedWrite,
        _ctx: &DeliveryContext,
    ) -> Result<DeliveryReceipt, AdapterError> {
        Err(read_only("take writes"))
    }

    #[tracing::instrument(
        name = "athena_dw.changes_since",
        skip_all,
        fields(adapter = "athena_dw", limit)
    )]
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<ChangePage, AdapterError> {
        let (since, key) = match cursor {
            None => ("-infinity".to_owned(), 0_i64),
            Some(c) if c.kind == "athena_dw" => parse_cursor(&c.position)?,
            Some(c) => {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!(
                        "a change cursor of {} cannot be used with athena_dw",
                        c.kind
                    ),
                ));
            }
        };
        let limit = limit.clamp(1, 1000);
        let client = self.client().await?;
        let rows = client
            .query(
                CHANGES_SQL,
                &[&since, &key, &self.lag.as_secs_f64(), &(limit as i64 + 1)],
            )
            .await
            .map_err(|e| classify_pg(&e))?;
        let more = rows.len() > limit;
        let mut changes = Vec::with_capacity(rows.len().min(limit));
        let mut next = (since, key);
        for row in rows.iter().take(limit) {
            let reference: String = row.try_get(0).map_err(|e| classify_pg(&e))?;
            let at: time::OffsetDateTime = row.try_get(1).map_err(|e| classify_pg(&e))?;
            let crime_key: i64 = row.try_get(2).map_err(|e| classify_pg(&e))?;
            let at = rfc3339(at);
            next = (at.clone(), crime_key);
            changes.push(RecordChange {
                crime_reference: reference,
                changed_at: at,
                kind: None,
            });
        }
        Ok(ChangePage {
            changes,
            next: ChangeCursor {
                kind: "athena_dw".into(),
                position: format!("{}|{}", next.0, next.1),
            },
            more,
        })
    }

    async fn cursor_at(&self, at: &str) -> Result<ChangeCursor, AdapterError> {
        let t = time::OffsetDateTime::parse(at, &Rfc3339).map_err(|_| {
            AdapterError::new(ErrorClass::Internal, "cursor_at: not an RFC 3339 time")
        })?;
        Ok(ChangeCursor {
            kind: "athena_dw".into(),
            position: format!("{}|0", rfc3339(t)),
        })
    }

    #[tracing::instrument(name = "athena_dw.health", skip_all, fields(adapter = "athena_dw"))]
    async fn health(&self) -> Result<(), AdapterError> {
        let client = self.client().await?;
        client
            .query("SELECT 1 FROM dw_crime LIMIT 1", &[])
            .await
            .map(|_| ())
            .map_err(|e| classify_pg(&e))
    }
}

fn parse_cursor(position: &str) -> Result<(String, i64), AdapterError> {
    let bad = || AdapterError::new(ErrorClass::Internal, "athena_dw change cursor is malformed");
    let (at, key) = position.rsplit_once('|').ok_or_else(bad)?;
    // `-infinity` is the start position: what a first page with no settled change hands back.
    if at != "-infinity" {
        time::OffsetDateTime::parse(at, &Rfc3339).map_err(|_| bad())?;
    }
    Ok((at.to_owned(), key.parse().map_err(|_| bad())?))
}

/// UTC, RFC 3339, fraction only when not zero: the form both simulators and the specs share.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A row as a JSON object of its columns: integers as numbers, text as strings, timestamps as
/// RFC 3339 (UTC), dates as `YYYY-MM-DD`, text arrays as arrays, `NULL` as `null`. A column of
/// another type is `internal` (the warehouse differs from what the queries expect).
pub(crate) fn row_to_json(row: &tokio_postgres::Row) -> Result<Map<String, Value>, AdapterError> {
    let mut out = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let get_err = |e: tokio_postgres::Error| {
            AdapterError::new(
                ErrorClass::Internal,
                format!("warehouse column {name}: {e}"),
            )
        };
        let value = match *column.type_() {
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<String>>(i)
                .map_err(get_err)?
                .map(Value::from),
            Type::TIMESTAMPTZ => row
                .try_get::<_, Option<time::OffsetDateTime>>(i)
                .map_err(get_err)?
                .map(|t| Value::from(rfc3339(t))),
            Type::DATE => row
                .try_get::<_, Option<time::Date>>(i)
                .map_err(get_err)?
                .map(|d| {
                    Value::from(
                        d.format(time::macros::format_description!("[year]-[month]-[day]"))
                            .unwrap_or_default(),
                    )
                }),
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => row
                .try_get::<_, Option<Vec<Option<String>>>>(i)
                .map_err(get_err)?
                .map(|items| {
                    Value::Array(
                        items
                            .into_iter()
                            .map(|s| s.map_or(Value::Null, Value::from))
                            .collect(),
                    )
                }),
            ref other => {
                return Err(AdapterError::new(
                    ErrorClass::Internal,
                    format!(
                        "warehouse column {name} has type {other}, which this adapter does not read"
                    ),
                ));
            }
        };
        out.insert(name.to_owned(), value.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// Classifies a database error by SQLSTATE (see the module table).
pub(crate) fn classify_pg(e: &tokio_postgres::Error) -> AdapterError {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: it could not be reached, or the connection broke.
        let class = if e.is_closed() {
            ErrorClass::Upstream5xx
        } else {
            ErrorClass::Connect
        };
        return AdapterError::new(class, format!("warehouse: {e}"));
    };
    let code = db.code().code();
    let class = match code {
        "57014" => ErrorClass::Timeout,
        "53300" | "53400" => ErrorClass::Throttled,
        "28000" | "28P01" | "42501" => ErrorClass::Unauthorized,
        c if c.starts_with("08") || c.starts_with("57P") => ErrorClass::Upstream5xx,
        c if c.starts_with("53") || c.starts_with("58") || c.starts_with("XX") => {
            ErrorClass::Upstream5xx
        }
        "40001" | "40P01" => ErrorClass::Upstream5xx,
        _ => ErrorClass::Internal,
    };
    AdapterError::new(
        class,
        format!("warehouse answered SQLSTATE {code}: {}", db.message()),
    )
}
