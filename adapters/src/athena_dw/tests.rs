//! The warehouse adapter against a fresh PostgreSQL database (`fixtures::warehouse`), and the
//! swap test: the same facts read through `athena` and `athena_dw` give identical NMPP case
//! documents, before and after mutations.

use std::sync::Arc;

use fixtures::athena::{AthenaSim, AthenaSimOptions};
use fixtures::dataset::{Dataset, Mutation};
use fixtures::warehouse::Warehouse;

use super::{AthenaDwClient, AthenaDwConfig};
use crate::athena::{AthenaClient, AthenaConfig, Secret};
use crate::records::{ChangeCursor, RecordWrite};
use crate::{DeliveryContext, ErrorClass, RecordSystem, RecordSystemConfig};

fn mappings() -> Arc<mappings::Mappings> {
    Arc::new(mappings::Mappings::builtin().expect("builtin specs"))
}

fn config(dw: &Warehouse) -> AthenaDwConfig {
    let mut cfg = AthenaDwConfig::new(format!(
        "postgres://{}@127.0.0.1:5432/{}",
        dw.read_only_role(),
        dw.database()
    ));
    cfg.password = Some(Secret::new(dw.read_only_password()));
    cfg.watermark_lag_ms = 0;
    cfg
}

async fn loaded() -> (Warehouse, AthenaDwClient, Dataset) {
    let dataset = Dataset::builtin();
    let dw = Warehouse::create().await.expect("warehouse database");
    dw.load_dataset(&dataset).await.expect("dataset loads");
    let client = AthenaDwClient::new(config(&dw), mappings()).expect("config");
    (dw, client, dataset)
}

#[tokio::test]
async fn reads_every_case_of_the_dataset_as_schema_valid_nmpp() {
    let (dw, client, dataset) = loaded().await;
    client.health().await.expect("healthy");
    for crime in &dataset.crimes {
        let case = client
            .read_case(&crime.crime_reference)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", crime.crime_reference));
        assert_eq!(
            case.document["crimeReference"],
            crime.crime_reference.as_str()
        );
        assert_eq!(case.document["status"], crime.status.as_str());
        assert!(case.mapping.starts_with("warehouse-to-nmpp-case@"));
        mappings::model::validate_model("nmpp-case@1", &case.document).expect("schema-valid");
    }
    let missing = client.read_case("42/99999/26").await.expect_err("unknown");
    assert_eq!(missing.class, ErrorClass::Rejected);
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn the_same_facts_give_identical_nmpp_through_athena_and_the_warehouse() {
    let (dw, warehouse, dataset) = loaded().await;
    let sim = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena sim");
    sim.load_dataset(&dataset);
    let athena = AthenaClient::new(AthenaConfig::new(sim.base_url()), mappings()).expect("config");

    let compare = |stage: &'static str| {
        let athena = &athena;
        let warehouse = &warehouse;
        let dataset = &dataset;
        async move {
            for crime in &dataset.crimes {
                let a = athena
                    .read_case(&crime.crime_reference)
                    .await
                    .unwrap_or_else(|e| panic!("{stage} athena {}: {e}", crime.crime_reference));
                let w = warehouse
                    .read_case(&crime.crime_reference)
                    .await
                    .unwrap_or_else(|e| panic!("{stage} warehouse {}: {e}", crime.crime_reference));
                assert_eq!(
                    a.document, w.document,
                    "{stage}: {} differs\nathena:    {}\nwarehouse: {}",
                    crime.crime_reference, a.document, w.document
                );
            }
        }
    };
    compare("loaded").await;

    // The same mutations applied to both stay identical.
    let target = dataset.crimes[2].crime_reference.clone();
    let mutations = [
        Mutation::AssignOfficer {
            crime_reference: target.clone(),
            officer: "OFF-1004".into(),
            supervisor: Some("OFF-1006".into()),
            at: "2026-03-01T09:00:00.123456Z".into(),
        },
        Mutation::SetStatus {
            crime_reference: target.clone(),
            status: "CSTS_0002".into(),
            at: "2026-03-01T09:00:01Z".into(),
        },
        Mutation::AssignOutcome {
            crime_reference: target.clone(),
            code: "21".into(),
            at: "2026-03-02T10:00:00+01:00".into(),
        },
        Mutation::AddUpdate {
            crime_reference: target.clone(),
            text: "CCTV has been reviewed".into(),
            at: "2026-03-02T11:00:00Z".into(),
        },
    ];
    for m in &mutations {
        sim.apply(m).expect("athena applies");
        dw.apply(m).await.expect("warehouse applies");
    }
    compare("mutated").await;
    let case = warehouse.read_case(&target).await.expect("read");
    assert_eq!(case.document["officerInCharge"]["officerId"], "OFF-1004");
    assert_eq!(
        case.document["outcome"]["publicCategory"],
        "further-investigation-not-in-public-interest"
    );
    assert_eq!(
        case.document["outcome"]["assignedAt"],
        "2026-03-02T09:00:00Z"
    );
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn the_read_only_role_cannot_write_and_writes_are_refused_as_read_only() {
    let (dw, client, _) = loaded().await;
    // Straight through the role: PostgreSQL refuses.
    let (pg, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port=5432 user={} password={} dbname={}",
            dw.read_only_role(),
            dw.read_only_password(),
            dw.database()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connects as the reader");
    tokio::spawn(conn);
    let error = pg
        .execute("UPDATE dw_crime SET crime_status_cd = 4", &[])
        .await
        .expect_err("a reader cannot update");
    let classified = super::client::classify_pg(&error);
    assert_eq!(classified.class, ErrorClass::Unauthorized, "{classified}");
    assert!(classified.message.contains("42501"), "{classified}");
    let error = pg
        .execute("CREATE TABLE x (a int)", &[])
        .await
        .expect_err("a reader cannot create tables");
    assert_eq!(error.code().map(|c| c.code()), Some("42501"));

    // Through the adapter: a clear, non-retryable read-only error, before any I/O.
    let write = RecordWrite::VictimContact {
        message: serde_json::json!({ "crimeReference": "42/00101/26" }),
    };
    let error = client.prepare_write(&write).expect_err("read-only");
    assert_eq!(error.class, ErrorClass::Rejected);
    assert!(!error.is_retryable());
    assert!(error.message.contains("read-only"), "{error}");
    assert!(client.read_only());
    let error = client
        .prepare_crime_record(&serde_json::json!({}))
        .expect_err("read-only");
    assert!(error.message.contains("read-only"));
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn watermark_change_detection_sees_every_change_once_in_order() {
    let (dw, client, dataset) = loaded().await;
    let first = client.changes_since(None, 100).await.expect("changes");
    assert_eq!(first.changes.len(), dataset.crimes.len());
    assert!(!first.more);
    let again = client
        .changes_since(Some(&first.next), 100)
        .await
        .expect("nothing new");
    assert!(again.changes.is_empty());
    assert_eq!(again.next, first.next, "no change keeps the cursor");

    // Paging: small pages give the same changes in the same order.
    let mut cursor: Option<ChangeCursor> = None;
    let mut paged = Vec::new();
    loop {
        let page = client
            .changes_since(cursor.as_ref(), 2)
            .await
            .expect("page");
        paged.extend(page.changes.iter().map(|c| c.crime_reference.clone()));
        cursor = Some(page.next);
        if !page.more {
            break;
        }
    }
    let all: Vec<String> = first
        .changes
        .iter()
        .map(|c| c.crime_reference.clone())
        .collect();
    assert_eq!(paged, all);

    let m = Mutation::SetStatus {
        crime_reference: dataset.crimes[0].crime_reference.clone(),
        status: "CSTS_0004".into(),
        at: "2026-03-05T10:00:00Z".into(),
    };
    dw.apply(&m).await.expect("applied");
    let page = client
        .changes_since(Some(&first.next), 100)
        .await
        .expect("one change");
    assert_eq!(page.changes.len(), 1);
    assert_eq!(
        page.changes[0].crime_reference,
        dataset.crimes[0].crime_reference
    );

    // A cursor of another adapter is refused; cursor_at starts at a time.
    let wrong = ChangeCursor {
        kind: "athena".into(),
        position: "3".into(),
    };
    assert_eq!(
        client
            .changes_since(Some(&wrong), 10)
            .await
            .expect_err("wrong kind")
            .class,
        ErrorClass::Internal
    );
    let from = client
        .cursor_at(&page.changes[0].changed_at)
        .await
        .expect("cursor");
    let since = client.changes_since(Some(&from), 10).await.expect("since");
    assert_eq!(
        since.changes.len(),
        1,
        "the change at that instant is included"
    );
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn the_watermark_lag_holds_back_fresh_changes() {
    let (dw, _, _) = loaded().await;
    let mut cfg = config(&dw);
    cfg.watermark_lag_ms = 60_000;
    let client = AthenaDwClient::new(cfg, mappings()).expect("config");
    let page = client.changes_since(None, 100).await.expect("changes");
    assert!(
        page.changes.is_empty(),
        "rows modified a moment ago are not settled yet"
    );
    // The cursor of that empty first page is usable: the next poll goes on from the start
    // (it was refused as malformed, which stopped change detection for good whenever the
    // first poll came within the lag of the last warehouse change).
    let next = client
        .changes_since(Some(&page.next), 100)
        .await
        .expect("the empty first page's cursor is accepted");
    assert!(next.changes.is_empty());
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn an_unknown_warehouse_code_is_a_named_mapping_error() {
    let (dw, client, dataset) = loaded().await;
    let reference = dataset.crimes[0].crime_reference.clone();
    dw.owner()
        .execute(
            "UPDATE dw_crime SET crime_status_cd = 42 WHERE crime_ref = $1",
            &[&reference],
        )
        .await
        .expect("owner updates");
    let error = client
        .read_case(&reference)
        .await
        .expect_err("unknown code");
    assert_eq!(error.class, ErrorClass::Mapping, "{error}");
    assert!(!error.is_retryable());
    assert!(
        error.message.contains("warehouse-to-nmpp-case@1.0.0"),
        "{error}"
    );
    assert!(error.message.contains("dw-status"), "{error}");
    dw.drop_database().await.expect("dropped");
}

#[tokio::test]
async fn an_unreachable_or_refusing_warehouse_is_classified() {
    // Nothing listens on port 1.
    let mut cfg = AthenaDwConfig::new("postgres://reader@127.0.0.1:1/nothing");
    cfg.connect_timeout_ms = 500;
    let client = AthenaDwClient::new(cfg, mappings()).expect("config");
    let error = client.read_case("42/00101/26").await.expect_err("down");
    assert_eq!(error.class, ErrorClass::Connect, "{error}");
    assert!(error.is_retryable());
    assert_eq!(
        client.health().await.expect_err("down").class,
        ErrorClass::Connect
    );

    // A wrong password on a real server (trust authentication accepts any password, so use a
    // role that does not exist instead).
    let (dw, _, _) = loaded().await;
    let cfg = AthenaDwConfig::new(format!(
        "postgres://no_such_role_x@127.0.0.1:5432/{}",
        dw.database()
    ));
    let client = AthenaDwClient::new(cfg, mappings()).expect("config");
    let error = client.read_case("42/00101/26").await.expect_err("refused");
    assert_eq!(error.class, ErrorClass::Unauthorized, "{error}");
    dw.drop_database().await.expect("dropped");
}

#[test]
fn configuration_is_checked_and_the_password_never_printed() {
    let cfg: RecordSystemConfig = serde_json::from_value(serde_json::json!({
        "type": "athena_dw",
        "url": "postgres://reader@dw.example:5432/athena_dw",
        "password": "hunter2",
    }))
    .expect("tagged config");
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert!(
        !serde_json::to_string(&cfg)
            .unwrap_or_default()
            .contains("hunter2")
    );
    let RecordSystemConfig::AthenaDw(inner) = &cfg else {
        panic!("not athena_dw");
    };
    assert_eq!(inner.watermark_lag_ms, 2000);
    let unknown = serde_json::from_value::<RecordSystemConfig>(serde_json::json!({
        "type": "athena_dw", "url": "postgres://r@h/d", "passwrd": "x",
    }));
    assert!(unknown.is_err());
    for (url, field) in [
        ("postgres://reader:pw@h/d", "athena_dw.url"),
        ("postgres://h/d", "athena_dw.url"),
        ("nonsense://", "athena_dw.url"),
    ] {
        let error = AthenaDwClient::new(AthenaDwConfig::new(url), mappings()).expect_err(url);
        assert_eq!(error.class, ErrorClass::Internal);
        assert!(error.message.starts_with(field), "{error}");
        assert!(!error.message.contains("pw"), "{error}");
    }
}

#[tokio::test]
async fn writes_through_the_context_are_refused_too() {
    let (dw, client, _) = loaded().await;
    let ctx = DeliveryContext {
        idempotency_key: "k".into(),
        correlation_id: "c".into(),
    };
    let prepared = crate::records::PreparedWrite {
        operation: crate::records::WriteOperation::OfficerTask,
        crime_reference: "42/00101/26".into(),
        party_id: None,
        payload: crate::TargetPayload {
            content_type: "application/xml".into(),
            body: String::new(),
            mapping: "x@1".into(),
        },
    };
    let error = client.write(&prepared, &ctx).await.expect_err("read-only");
    assert_eq!(error.class, ErrorClass::Rejected);
    dw.drop_database().await.expect("dropped");
}
