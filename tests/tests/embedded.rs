//! The embedded default: `nmpp-gateway serve` with no configuration runs a demo force on an
//! in-process Athena simulator, prints what it started and a `curl` line that works.

use nmpp_tests::{Api, gateway_bin, secs};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

fn command(dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(gateway_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NMPP_GATEWAY") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_runs_the_demo_and_its_curl_line_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = command(dir.path());
    serve
        .arg("serve")
        .env("NMPP_GATEWAY__HTTP__LISTEN", "127.0.0.1:0")
        .env("NMPP_GATEWAY_DEMO_API_KEY", "demo-test")
        .env(
            "NMPP_GATEWAY_DEMO_API_SECRET",
            "demo-secret-0123456789abcdef",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = serve.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    tokio::time::timeout(secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let last = line.starts_with("Then:");
            banner.push(line);
            if last {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no complete banner within 60 s: {banner:#?}"));
    let banner = banner.join("\n");

    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in the banner:\n{banner}"))
        .to_owned();
    for needle in [
        "/docs",
        "/openapi/v1.json",
        "demo key    demo-test",
        "demo secret demo-secret-0123456789abcdef",
        "in-process simulator",
    ] {
        assert!(
            banner.contains(needle),
            "banner lacks {needle:?}:\n{banner}"
        );
    }
    let curl = banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl line:\n{banner}"))
        .to_owned();

    // Run the printed line as a user would, in the directory serve was started in.
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .current_dir(dir.path())
        .output()
        .await
        .expect("running sh (and curl)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{curl}\n{out:?}");
    let receipt: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("curl printed no JSON ({e}): {stdout}"));
    let id = receipt["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {stdout}"))
        .to_owned();

    // Delivered to the in-process simulator.
    let api = Api::new(&base, "demo-test", "demo-secret-0123456789abcdef");
    let ex = api.wait_for_status(&id, "delivered", secs(15)).await;
    assert_eq!(ex["force"], "demo");
    assert!(
        ex["targetRef"]
            .as_str()
            .is_some_and(|r| r.starts_with("42/"))
    );

    // `exchanges list` in the same directory finds it in ./data.
    let out = command(dir.path())
        .args(["exchanges", "list", "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], id.as_str(), "{rows:#}");
    assert!(dir.path().join("data/journal.db").exists());

    // The example with a photo, as the banner says: the crime record goes to Athena, then the
    // photo to the in-process DAMS, filed under the crime reference.
    assert!(
        banner.contains("evidence → dams at http://127.0.0.1:")
            && banner.contains("data/example-incident-with-photo.json"),
        "{banner}"
    );
    let with_photo = curl.replace(
        "@data/example-incident.json",
        "@data/example-incident-with-photo.json",
    );
    assert_ne!(with_photo, curl, "{curl}");
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&with_photo)
        .current_dir(dir.path())
        .output()
        .await
        .expect("running sh (and curl)");
    assert!(out.status.success(), "{with_photo}\n{out:?}");
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("curl printed no JSON ({e}): {out:?}"));
    let crime = api
        .wait_for_status(
            receipt["data"]["id"].as_str().unwrap(),
            "delivered",
            secs(15),
        )
        .await;
    let crime_ref = crime["targetRef"].as_str().unwrap().to_owned();
    let evidence = nmpp_tests::eventually("the photo to reach the DAMS", secs(15), || async {
        let found = api.exchanges("kind=evidence.submitted").await;
        match found.first() {
            Some(e) if e["status"] == "delivered" => Ok(e.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        evidence["targetRef"]
            .as_str()
            .is_some_and(|r| r.starts_with("EV-")),
        "{evidence:#}"
    );
    assert_eq!(evidence["caseRef"], crime_ref.as_str(), "{evidence:#}");

    child.kill().await.unwrap();
}
