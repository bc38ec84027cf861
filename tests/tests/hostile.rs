//! Hostile input to `POST /incidents`: every case gets a 4xx JSON:API error that names the
//! problem (never a 5xx), stores nothing, and leaves the server serving.

use nmpp_tests::{
    API_KEY, JSONAPI, OPS_KEY, OPS_SECRET, TestGateway, error_document, error_text, header, sdm,
    secs,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Posts raw bytes to `/incidents` with `content_type`, authenticated.
async fn post_raw(gw: &TestGateway, body: Vec<u8>, content_type: &str) -> reqwest::Response {
    gw.api()
        .post("/incidents")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the request reaches the server")
}

/// The server is alive, accepts a valid submission, and stored nothing from the hostile input.
async fn still_serves(gw: &TestGateway) {
    let api = gw.api();
    let live = api.http.get(api.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert!(
        api.exchanges("limit=1000").await.is_empty(),
        "a refused request left an exchange behind"
    );
    let ok = api.submit_ok(&sdm::online_crime_report()).await;
    api.wait_for_status(&ok.exchange_id, "delivered", secs(15))
        .await;
}

/// Checks a raw HTTP answer is the JSON:API 413 for an over-long body.
fn assert_raw_413(answer: &[u8]) {
    let answer = String::from_utf8_lossy(answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "expected 413, got: {answer}"
    );
    assert!(answer.contains("request.too_large"), "{answer}");
}

fn assert_names(doc: &Value, needles: &[&str]) {
    let text = error_text(doc);
    for n in needles {
        assert!(text.contains(n), "the error does not name {n:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_naming_line_and_column() {
    let gw = TestGateway::start().await;
    let body = b"{\n  \"data\": {\"type\": \"incident\",,}\n}".to_vec();
    let doc = error_document(post_raw(&gw, body, JSONAPI).await, 400).await;
    let detail = doc["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 2") && detail.contains("column 31"),
        "position not named: {detail}"
    );
    assert_eq!(doc["errors"][0]["code"], "request.malformed_json");
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_json_is_400() {
    let gw = TestGateway::start().await;
    let mut body = sdm::ONLINE_CRIME_REPORT.as_bytes().to_vec();
    body.truncate(body.len() / 2);
    let doc = error_document(post_raw(&gw, body, JSONAPI).await, 400).await;
    assert_names(&doc, &["line", "column"]);
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_are_422_naming_the_field() {
    let gw = TestGateway::start().await;
    let api = gw.api();

    let mut d = sdm::online_crime_report();
    sdm::person_mut(&mut d, "Crockett")["attributes"]["surname"] = json!(12);
    let doc = error_document(api.submit(&d).await.unwrap(), 422).await;
    assert_names(&doc, &["surname", "type"]);
    assert_eq!(
        doc["errors"][0]["meta"]["submissionId"],
        sdm::submission_id(&d),
        "the error carries the submission id"
    );

    let mut d = sdm::online_crime_report();
    sdm::submission_mut(&mut d)["attributes"]["submissionId"] = json!("not-a-uuid");
    let doc = error_document(api.submit(&d).await.unwrap(), 422).await;
    assert_names(&doc, &["submissionId"]);

    let mut d = sdm::skeleton();
    d["data"] = json!("incident");
    let doc = error_document(api.submit(&d).await.unwrap(), 422).await;
    assert_names(&doc, &["data"]);

    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_submission_is_422_naming_submission() {
    let gw = TestGateway::start().await;
    let mut d = sdm::online_crime_report();
    d["included"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["type"] != "submission");
    let doc = error_document(gw.api().submit(&d).await.unwrap(), 422).await;
    let named = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["meta"]["field"] == "submission" && e["meta"]["rule"] == "required");
    assert!(named, "no error names submission as required: {doc:#}");
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_body_is_413() {
    let gw = TestGateway::start().await;
    let mut body = b"{\"data\": \"".to_vec();
    body.resize(10 * 1024 * 1024, b'a');
    body.extend_from_slice(b"\"}");
    let doc = error_document(post_raw(&gw, body, JSONAPI).await, 413).await;
    assert_names(&doc, &["5242880"]);
    still_serves(&gw).await;
}

/// Without `Content-Length` the limit is enforced while reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_chunked_body_is_413() {
    let gw = TestGateway::start().await;
    let addr = gw.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /incidents HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {JSONAPI}\r\n\
         x-api-key: {API_KEY}\r\nx-api-secret: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        nmpp_tests::API_SECRET
    );
    let (mut rd, mut wr) = stream.split();
    let write = async {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..160 {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        std::io::Result::Ok(())
    };
    let read = async {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        // Read until the headers and the whole (small) body have arrived or the peer closes.
        loop {
            match rd.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"}") {
                break;
            }
        }
        buf
    };
    // The server may answer before the upload ends and close; a write error is expected then.
    let (_, answer) = tokio::join!(write, read);
    assert_raw_413(&answer);
    still_serves(&gw).await;
}

/// A client that sends its whole over-long body before it reads (as most HTTP clients do) still
/// gets the 413: the gateway reads and discards the rest of the body before it answers, instead
/// of closing on unread bytes, which resets the connection under the client's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_writes_its_whole_over_long_body_first_reads_the_413() {
    let gw = TestGateway::start().await;
    let addr = gw.base_url.trim_start_matches("http://").to_owned();
    let len = 12 * 1024 * 1024;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /incidents HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {JSONAPI}\r\n\
         x-api-key: {API_KEY}\r\nx-api-secret: {}\r\ncontent-length: {len}\r\n\r\n",
        nmpp_tests::API_SECRET
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // More than the loopback socket buffers hold: the writes complete only if the server reads.
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..len / chunk.len() {
        stream
            .write_all(&chunk)
            .await
            .expect("the gateway reads the whole body before it answers");
    }
    let mut answer = Vec::new();
    let mut tmp = [0u8; 4096];
    while !(answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}")) {
        let n = stream
            .read(&mut tmp)
            .await
            .expect("the answer, not a reset");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&tmp[..n]);
    }
    assert_raw_413(&answer);
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_400() {
    let gw = TestGateway::start().await;
    let mut body =
        br#"{"data": {"type": "incident", "attributes": {"incidentDescription": ""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    body.extend_from_slice(br#""}}, "included": []}"#);
    let doc = error_document(post_raw(&gw, body, JSONAPI).await, 400).await;
    assert_names(&doc, &["line 1", "column"]);
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_of_nesting_is_400() {
    let gw = TestGateway::start().await;
    let mut arrays = vec![b'['; 10_000];
    arrays.extend(vec![b']'; 10_000]);
    let doc = error_document(post_raw(&gw, arrays, JSONAPI).await, 400).await;
    assert_names(&doc, &["recursion limit"]);

    let mut objects = b"{\"data\":".repeat(10_000);
    objects.extend_from_slice(b"null");
    objects.extend(vec![b'}'; 10_000]);
    let doc = error_document(post_raw(&gw, objects, JSONAPI).await, 400).await;
    assert_names(&doc, &["recursion limit"]);
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_array_is_refused_with_a_named_reason() {
    let gw = TestGateway::start().await;
    let body = format!("[{}]", sdm::ONLINE_CRIME_REPORT).into_bytes();
    let res = post_raw(&gw, body, JSONAPI).await;
    let status = res.status().as_u16();
    assert!(status == 400 || status == 422, "got {status}");
    let doc = error_document(res, status).await;
    assert_names(&doc, &["document", "array"]);
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_content_type_is_415() {
    let gw = TestGateway::start().await;
    let body = sdm::ONLINE_CRIME_REPORT.as_bytes().to_vec();
    for ct in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
    ] {
        let doc = error_document(post_raw(&gw, body.clone(), ct).await, 415).await;
        assert_names(&doc, &["Content-Type"]);
    }
    let res = gw
        .api()
        .post("/incidents")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    error_document(res, 415).await;
    // Media type parameters and letter case are allowed.
    let mut d = sdm::skeleton();
    d["data"]["attributes"]["incidentDescription"] = json!("charset parameter");
    let res = post_raw(
        &gw,
        serde_json::to_vec(&d).unwrap(),
        "Application/JSON; charset=utf-8",
    )
    .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gw.api().wait_for_status(&id, "delivered", secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_wrong_credentials_are_401() {
    let gw = TestGateway::start().await;
    let api = gw.api();
    let body = serde_json::to_vec(&sdm::online_crime_report()).unwrap();

    let res = api
        .http
        .post(api.url("/incidents"))
        .header("content-type", JSONAPI)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(
        header(&res, "www-authenticate").starts_with("Basic"),
        "401 without a WWW-Authenticate challenge"
    );
    error_document(res, 401).await;

    for (key, secret) in [
        (API_KEY, "wrong-secret-0123456789abcdefghij"),
        ("nobody", nmpp_tests::API_SECRET),
        (API_KEY, ""),
    ] {
        let res = api
            .http
            .post(api.url("/incidents"))
            .header("content-type", JSONAPI)
            .header("x-api-key", key)
            .header("x-api-secret", secret)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(!header(&res, "www-authenticate").is_empty());
        error_document(res, 401).await;
    }
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_force_is_422() {
    let gw = TestGateway::start().await;
    let mut d = sdm::online_crime_report();
    sdm::submission_mut(&mut d)["attributes"]["forceIdentifier"] = json!(99);
    let doc = error_document(gw.api().submit(&d).await.unwrap(), 422).await;
    assert_names(&doc, &["forceIdentifier", "99"]);
    assert_eq!(
        doc["errors"][0]["meta"]["submissionId"],
        sdm::submission_id(&d)
    );
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ihub_role_is_403() {
    let gw = TestGateway::start().await;
    let ops = gw.api().as_client(OPS_KEY, OPS_SECRET);
    let doc = error_document(ops.submit(&sdm::online_crime_report()).await.unwrap(), 403).await;
    assert_names(&doc, &["ihub"]);
    // The same client may read exchanges.
    assert!(ops.exchanges("").await.is_empty());
    still_serves(&gw).await;
}

/// Every hostile request at once, then a valid one: the gateway answers each with a 4xx and keeps
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_hostile_inputs_together_never_get_a_5xx() {
    let gw = TestGateway::start().await;
    let mut wrong_type = sdm::online_crime_report();
    sdm::person_mut(&mut wrong_type, "Crockett")["attributes"]["surname"] = json!(12);
    let mut no_submission = sdm::skeleton();
    no_submission["included"] = json!([]);
    let mut nested = vec![b'['; 10_000];
    nested.extend(vec![b']'; 10_000]);
    let mut big = vec![b' '; 10 * 1024 * 1024];
    big.extend_from_slice(b"{}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed", b"{\"data\":".to_vec(), JSONAPI),
        (
            "wrong type",
            serde_json::to_vec(&wrong_type).unwrap(),
            JSONAPI,
        ),
        (
            "no submission",
            serde_json::to_vec(&no_submission).unwrap(),
            JSONAPI,
        ),
        ("10 MB", big, JSONAPI),
        ("invalid utf-8", b"{\"data\": \"\xff\"}".to_vec(), JSONAPI),
        ("nesting", nested, JSONAPI),
        ("array", b"[]".to_vec(), JSONAPI),
        ("string", b"\"incident\"".to_vec(), JSONAPI),
        ("null", b"null".to_vec(), JSONAPI),
        ("empty", Vec::new(), JSONAPI),
        ("content type", b"{}".to_vec(), "text/plain"),
    ];
    let answers = futures::future::join_all(cases.into_iter().map(|(name, body, ct)| {
        let gw = &gw;
        async move { (name, post_raw(gw, body, ct).await) }
    }))
    .await;
    for (name, res) in answers {
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{name}: got {status}");
        let doc = error_document(res, status).await;
        assert!(!error_text(&doc).is_empty(), "{name}: {doc}");
    }
    still_serves(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_is_exact() {
    let limit = 64 * 1024;
    let gw = TestGateway::start_with(|c| c.http.body_limit_bytes = limit).await;
    // A valid document padded with trailing whitespace to exactly the limit is accepted...
    let doc = sdm::online_crime_report();
    let mut body = serde_json::to_vec(&doc).unwrap();
    body.resize(limit, b' ');
    let res = post_raw(&gw, body.clone(), JSONAPI).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // ...and one byte more is not.
    let mut doc = sdm::online_crime_report();
    doc["data"]["attributes"]["incidentDescription"] = json!("one byte more");
    let mut body = serde_json::to_vec(&doc).unwrap();
    body.resize(limit + 1, b' ');
    let doc = error_document(post_raw(&gw, body, JSONAPI).await, 413).await;
    assert_names(&doc, &[&limit.to_string()]);
}
