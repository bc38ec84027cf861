//! The gateway API around the iHub endpoint: authentication on everything but `/health/*`,
//! readiness, metrics, common headers, JSON:API 404s, and the committed OpenAPI document.

use nmpp_tests::{API_KEY, API_SECRET, FORCE, TestGateway, error_document, header, sdm, secs};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_but_health_needs_credentials() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let anon = &api.http;
    let some_id = uuid::Uuid::now_v7();
    let gets = [
        "/metrics".to_owned(),
        "/openapi/v1.json".to_owned(),
        "/docs".to_owned(),
        "/v1/exchanges".to_owned(),
        format!("/v1/exchanges/{some_id}"),
        "/v1/audit/verify".to_owned(),
    ];
    for path in &gets {
        let res = anon.get(api.url(path)).send().await.unwrap();
        assert!(
            header(&res, "www-authenticate").starts_with("Basic"),
            "GET {path}: no challenge"
        );
        error_document(res, 401).await;
    }
    for path in [
        "/incidents".to_owned(),
        format!("/v1/exchanges/{some_id}/replay"),
        "/v1/config/reload".to_owned(),
    ] {
        let res = anon.post(api.url(&path)).send().await.unwrap();
        error_document(res, 401).await;
    }
    for path in ["/health/live", "/health/ready"] {
        let res = anon.get(api.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path} without credentials");
    }
    // With credentials the same endpoints answer.
    for path in &gets[..4] {
        let res = api.get(path).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path} with credentials");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_credentials_work() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let res = api
        .http
        .get(api.url("/v1/exchanges"))
        .basic_auth(API_KEY, Some(API_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["data"].is_array(), "{body}");

    let res = api
        .http
        .get(api.url("/docs"))
        .basic_auth(API_KEY, Some(API_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("/openapi/v1.json"));

    let res = api
        .http
        .get(api.url("/v1/exchanges"))
        .basic_auth(API_KEY, Some("not-the-secret"))
        .send()
        .await
        .unwrap();
    error_document(res, 401).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_reports_journal_and_adapters_and_degrades_while_athena_refuses() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let ready = || async {
        let res = api.http.get(api.url("/health/ready")).send().await.unwrap();
        let code = res.status().as_u16();
        (code, res.json::<Value>().await.unwrap())
    };

    let (code, body) = ready().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["journal"]["status"], "up", "{body}");
    let adapters = body["adapters"].as_array().expect("adapters");
    assert_eq!(adapters.len(), 1, "{body}");
    assert_eq!(adapters[0]["force"], FORCE);
    assert_eq!(adapters[0]["system"], "athena");
    assert_eq!(adapters[0]["status"], "up");

    gw.sim.refuse().await;
    let (code, body) = ready().await;
    // Still 200: submissions are accepted and delivered later.
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["journal"]["status"], "up", "{body}");
    assert_eq!(body["adapters"][0]["status"], "down", "{body}");
    // The first probe may meet a kept-alive connection the simulator just closed (`protocol`);
    // after that nothing is listening, which is `connect`.
    let error = body["adapters"][0]["error"].as_str().unwrap_or("");
    assert!(matches!(error, "connect" | "protocol"), "{body}");
    nmpp_tests::eventually("readiness to say connect", secs(10), || async {
        let (code, body) = ready().await;
        if code == 200 && body["status"] == "degraded" && body["adapters"][0]["error"] == "connect"
        {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;

    // While degraded a submission is still accepted, and delivered once Athena is back.
    let accepted = api.submit_ok(&sdm::skeleton()).await;
    nmpp_tests::eventually(
        "an attempt to meet the refused connection",
        secs(10),
        || async {
            let ex = api.exchange(&accepted.exchange_id).await;
            let met = ex["attempts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["errorClass"] == "connect"));
            if met { Ok(()) } else { Err(ex.to_string()) }
        },
    )
    .await;
    assert!(gw.sim.records().is_empty());
    gw.sim.accept().await.unwrap();
    nmpp_tests::eventually("readiness to recover", secs(10), || async {
        let (_, body) = ready().await;
        if body["status"] == "ready" {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .await;
    let ex = api
        .wait_for_status(&accepted.exchange_id, "delivered", secs(15))
        .await;
    let (last, failed) = ex["attempts"].as_array().unwrap().split_last().unwrap();
    assert_eq!(last["outcome"], "delivered", "{ex:#}");
    assert!(!failed.is_empty(), "{ex:#}");
    for a in failed {
        assert_eq!(a["outcome"], "retry", "{ex:#}");
        assert!(
            matches!(a["errorClass"].as_str(), Some("connect" | "protocol")),
            "{ex:#}"
        );
    }
}

/// The value of the Prometheus sample named `series` exactly (name and labels), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exchanges_by_outcome_and_time_requests() {
    // A force key of its own keeps the counts exact even if tests share a process.
    let force = format!("metrics{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let gw = TestGateway::start_with(|c| {
        let f = c.forces.remove(FORCE).unwrap();
        c.forces.insert(force.clone(), f);
    })
    .await;
    let api = gw.api();

    let doc = sdm::online_crime_report();
    let first = api.submit_ok(&doc).await;
    api.submit_ok(&doc).await; // duplicate
    api.wait_for_status(&first.exchange_id, "delivered", secs(15))
        .await;
    gw.sim.reject_next(1, 422);
    let parked = api.submit_ok(&sdm::skeleton()).await;
    api.wait_for_status(&parked.exchange_id, "parked", secs(15))
        .await;
    let bad = api
        .post("/incidents")
        .header("content-type", nmpp_tests::JSONAPI)
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let res = api.get("/metrics").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let ex = |outcome: &str| {
        sample(
            &text,
            &format!(
                "gateway_exchanges_total{{force=\"{force}\",kind=\"incident.submitted\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(ex("accepted"), Some(2.0), "{text}");
    assert_eq!(ex("duplicate"), Some(1.0), "{text}");
    assert_eq!(ex("delivered"), Some(1.0), "{text}");
    assert_eq!(ex("parked"), Some(1.0), "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("gateway_exchanges_total{") && l.contains("outcome=\"rejected\"")
        ),
        "no rejected count: {text}"
    );
    assert!(
        text.contains("# TYPE gateway_http_request_duration_seconds histogram"),
        "{text}"
    );
    let count = sample(
        &text,
        "gateway_http_request_duration_seconds_count{method=\"POST\",route=\"/incidents\",status=\"201\"}",
    );
    assert!(
        count.is_some_and(|c| c >= 3.0),
        "201 count {count:?}: {text}"
    );
    assert!(
        text.contains(
            "gateway_http_request_duration_seconds_bucket{method=\"POST\",route=\"/incidents\",status=\"422\",le=\"+Inf\"}"
        ),
        "{text}"
    );
    assert!(text.contains("gateway_delivery_attempts_total{"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_api_version_and_a_correlation_id() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let some_id = uuid::Uuid::now_v7();
    let requests = vec![
        api.http.get(api.url("/health/live")),
        api.http.get(api.url("/health/ready")),
        api.http.get(api.url("/v1/exchanges")),
        api.get("/v1/exchanges"),
        api.get(&format!("/v1/exchanges/{some_id}")),
        api.get("/no/such/path"),
        api.get("/metrics"),
        api.post("/incidents").header("content-type", "text/plain"),
    ];
    for rb in requests {
        let res = rb.send().await.unwrap();
        let what = format!("{} {}", res.status(), res.url().path());
        assert_eq!(
            header(&res, "api-version"),
            gateway::app::API_VERSION,
            "{what}"
        );
        assert!(!header(&res, "x-correlation-id").is_empty(), "{what}");
    }

    // A correlation id sent is echoed, kept on the exchange and passed on to Athena.
    let doc = sdm::skeleton();
    let res = api
        .post("/incidents")
        .header("content-type", nmpp_tests::JSONAPI)
        .header("x-correlation-id", "corr-test-0042")
        .body(serde_json::to_vec(&doc).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "x-correlation-id"), "corr-test-0042");
    let id = res.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ex = api.wait_for_status(&id, "delivered", secs(15)).await;
    assert_eq!(ex["correlationId"], "corr-test-0042");
    let rec = gw.sim.record_by_key(&sdm::submission_id(&doc)).unwrap();
    assert_eq!(rec.correlation_id.as_deref(), Some("corr-test-0042"));

    let res = api
        .get("/health/live")
        .header("x-correlation-id", "corr-live")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "x-correlation-id"), "corr-live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_are_jsonapi_errors() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let doc = error_document(api.get("/no/such/path").send().await.unwrap(), 404).await;
    assert_eq!(doc["errors"][0]["code"], "not_found");
    assert!(
        doc["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("/no/such/path"),
        "{doc}"
    );

    let missing = uuid::Uuid::now_v7();
    let res = api
        .get(&format!("/v1/exchanges/{missing}"))
        .send()
        .await
        .unwrap();
    error_document(res, 404).await;
    let res = api.get("/v1/exchanges/not-a-uuid").send().await.unwrap();
    error_document(res, 400).await;

    let res = api.get("/incidents").send().await.unwrap();
    error_document(res, 405).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_openapi_document_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/v1.json");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = gateway::openapi::json();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "openapi/v1.json differs from what the code generates (first difference at line \
             {line}:\n  committed: {:?}\n  generated: {:?}).\nRegenerate it with:\n  cargo run \
             -p gateway -- openapi > openapi/v1.json",
            committed.lines().nth(line - 1).unwrap_or("<end of file>"),
            generated.lines().nth(line - 1).unwrap_or("<end of file>"),
        );
    }

    // The served document is the same one.
    let gw = TestGateway::start().await;
    let res = gw.api().get("/openapi/v1.json").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), generated);

    let doc: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["info"]["version"], gateway::app::API_VERSION);
    for p in [
        "/incidents",
        "/v1/exchanges",
        "/v1/exchanges/{id}",
        "/health/ready",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is not documented");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_audited_with_who_what_which_object_and_result() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let accepted = api.submit_ok(&sdm::skeleton()).await;
    api.wait_for_status(&accepted.exchange_id, "delivered", secs(15))
        .await;
    let denied = api
        .http
        .get(api.url("/v1/exchanges"))
        .header("x-api-key", API_KEY)
        .header("x-api-secret", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let ops = api.as_client(nmpp_tests::OPS_KEY, nmpp_tests::OPS_SECRET);
    let forbidden = ops.submit(&sdm::skeleton()).await.unwrap();
    assert_eq!(forbidden.status(), 403);

    let journal = replay::open(
        &format!("sqlite://{}", gw.journal_path().display()),
        replay::OpenOptions::default(),
    )
    .await
    .unwrap();
    let records = journal.audit_records(1, 10_000).await.unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=records.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );

    let create = records
        .iter()
        .find(|r| r.event.action == "incident.create")
        .expect("an incident.create record");
    assert_eq!(create.event.actor, API_KEY);
    assert_eq!(create.event.role, "ihub");
    assert_eq!(create.event.force.as_deref(), Some(FORCE));
    assert_eq!(create.event.object_type.as_deref(), Some("exchange"));
    assert_eq!(
        create.event.object_id.as_deref(),
        Some(accepted.exchange_id.as_str())
    );
    assert_eq!(create.event.result, "success");
    assert_eq!(create.event.source_ip.as_deref(), Some("127.0.0.1"));

    let views = records
        .iter()
        .filter(|r| {
            r.event.action == "exchange.view"
                && r.event.object_id.as_deref() == Some(accepted.exchange_id.as_str())
        })
        .count();
    assert!(views >= 1, "GET /v1/exchanges/{{id}} is audited");

    let failure = records
        .iter()
        .find(|r| r.event.action == "auth.failure")
        .expect("an auth.failure record");
    assert_eq!(failure.event.result, "denied");
    assert_eq!(failure.event.actor, "anonymous");
    let detail = failure.event.detail.as_ref().unwrap();
    assert_eq!(detail["presentedKey"], API_KEY);
    assert!(
        !detail.to_string().contains("wrong"),
        "the secret tried is never recorded"
    );

    let refused = records
        .iter()
        .find(|r| r.event.actor == nmpp_tests::OPS_KEY && r.event.result == "denied")
        .expect("the 403 is audited");
    assert_eq!(refused.event.role, "operator");
}

fn client(
    secret: &str,
    roles: Vec<gateway::config::Role>,
    forces: &[&str],
) -> gateway::config::ClientConfig {
    gateway::config::ClientConfig {
        secret_sha256: gateway::auth::hash_secret(secret),
        roles,
        forces: forces.iter().map(|f| (*f).to_owned()).collect(),
        description: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_forces_limit_what_a_client_may_do() {
    use gateway::config::Role;
    const S: &str = "client-secret-0123456789abcdefgh";
    let gw = TestGateway::start_with(|c| {
        let mut other = c.forces[FORCE].clone();
        other.name = "Other Constabulary".into();
        other.ihub_force_id = 43;
        c.forces.insert("other".into(), other);
        c.auth
            .clients
            .insert("ihub-only".into(), client(S, vec![Role::Ihub], &["*"]));
        c.auth
            .clients
            .insert("auditor".into(), client(S, vec![Role::Auditor], &["*"]));
        c.auth.clients.insert(
            "other-force".into(),
            client(S, vec![Role::Ihub, Role::Operator], &["other"]),
        );
    })
    .await;
    let api = gw.api();
    let ours = api.submit_ok(&sdm::skeleton()).await.exchange_id;
    api.wait_for_status(&ours, "delivered", secs(15)).await;
    gw.sim.reject_next(1, 422);
    let parked = api.submit_ok(&sdm::skeleton()).await.exchange_id;
    api.wait_for_status(&parked, "parked", secs(15)).await;

    // iHub may submit but not look around.
    let ihub = api.as_client("ihub-only", S);
    ihub.submit_ok(&sdm::skeleton()).await;
    error_document(ihub.get("/v1/exchanges").send().await.unwrap(), 403).await;
    error_document(
        ihub.get(&format!("/v1/exchanges/{ours}"))
            .send()
            .await
            .unwrap(),
        403,
    )
    .await;

    // An auditor may view and verify, not replay or submit.
    let auditor = api.as_client("auditor", S);
    assert_eq!(auditor.exchange(&ours).await["id"], ours.as_str());
    let res = auditor.get("/v1/audit/verify").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["intact"], true);
    let res = auditor
        .post(&format!("/v1/exchanges/{parked}/replay"))
        .send()
        .await
        .unwrap();
    error_document(res, 403).await;
    error_document(auditor.submit(&sdm::skeleton()).await.unwrap(), 403).await;

    // A client of another force sees nothing of this one and may not submit for it.
    let other = api.as_client("other-force", S);
    error_document(
        other
            .get(&format!("/v1/exchanges/{ours}"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let res = other
        .post(&format!("/v1/exchanges/{parked}/replay"))
        .send()
        .await
        .unwrap();
    error_document(res, 404).await;
    assert!(other.exchanges("").await.is_empty());
    error_document(other.submit(&sdm::skeleton()).await.unwrap(), 403).await;
    let mut for_other = sdm::skeleton();
    sdm::submission_mut(&mut for_other)["attributes"]["forceIdentifier"] = "43".into();
    let accepted = other.submit_ok(&for_other).await;
    let ex = other.exchange(&accepted.exchange_id).await;
    assert_eq!(ex["force"], "other");

    // The parent is untouched by the refused replays.
    let p = api.exchange(&parked).await;
    assert_eq!(p["children"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_listing_validates_its_query_and_pages_with_links_next() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let mut expected = std::collections::HashSet::new();
    for _ in 0..12 {
        expected.insert(api.submit_ok(&sdm::skeleton()).await.exchange_id);
    }
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("status=lost", "status"),
    ] {
        let res = api
            .get(&format!("/v1/exchanges?{query}"))
            .send()
            .await
            .unwrap();
        let doc = error_document(res, 400).await;
        assert_eq!(
            doc["errors"][0]["source"]["parameter"], param,
            "{query}: {doc}"
        );
    }
    let res = api.get("/v1/exchanges?limit=abc").send().await.unwrap();
    error_document(res, 400).await;

    // Pages of 5 follow links.next to the end, every exchange once.
    let mut seen = Vec::new();
    let mut next = Some("/v1/exchanges?limit=5".to_owned());
    while let Some(path) = next {
        let page = api.get_json(&path).await;
        for r in page["data"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
        next = page["links"]["next"].as_str().map(str::to_owned);
        assert!(seen.len() <= 12, "paging does not end: {seen:?}");
    }
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert_eq!(
        seen.into_iter().collect::<std::collections::HashSet<_>>(),
        expected
    );
}
