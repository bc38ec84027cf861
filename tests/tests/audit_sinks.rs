//! Audit sinks wired into the gateway, end to end: the Splunk HEC simulator (indexer
//! acknowledgement on) and the Sentinel simulator (token endpoint and Logs Ingestion API) go
//! away for a shortened outage under steady traffic; after they come back every audit record
//! (and the signed checkpoints) reaches both, duplicates only under the same EventUid. A restart
//! resumes from the stored cursors on the same HEC channel.

use adapters::sentinel::SentinelConfig;
use adapters::sink::{AuditSinkConfig, DriverConfig};
use adapters::splunk_hec::SplunkHecConfig;
use fixtures::hec::{HecSim, HecSimOptions};
use fixtures::sentinel::{SentinelSim, SentinelSimOptions};
use nmpp_tests::{API_KEY, API_SECRET, Api, eventually, secs, test_config};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

fn driver() -> DriverConfig {
    DriverConfig {
        ack_poll_ms: 50,
        ack_timeout_ms: 3_000,
        retry_min_ms: 50,
        retry_max_ms: 400,
        idle_poll_ms: 50,
        halt_recheck_ms: 500,
        ..DriverConfig::default()
    }
}

fn sinks(hec: &HecSim, sentinel: &SentinelSim) -> Vec<AuditSinkConfig> {
    let mut h = SplunkHecConfig::new(hec.base_url(), hec.token(), "unused");
    // No channel configured: the gateway generates one and keeps it in the journal.
    h.channel = None;
    h.timeout_ms = 2_000;
    h.connect_timeout_ms = 300;
    h.driver = driver();
    let o = sentinel.options();
    let s = SentinelConfig {
        authority: sentinel.base_url(),
        timeout_ms: 2_000,
        connect_timeout_ms: 300,
        driver: driver(),
        ..SentinelConfig::new(
            sentinel.base_url(),
            &o.dcr_immutable_id,
            &o.stream,
            &o.tenant_id,
            &o.client_id,
            o.client_secret.as_str(),
        )
    };
    vec![AuditSinkConfig::SplunkHec(h), AuditSinkConfig::Sentinel(s)]
}

struct Running {
    base_url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    journal: Arc<dyn replay::Journal>,
}

async fn start(config: &gateway::config::Config) -> Running {
    let gw = gateway::Gateway::build(config.clone(), None)
        .await
        .expect("building the gateway");
    let journal = gw.state.journal.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(gateway::run(listener, gw, shutdown.clone()));
    Running {
        base_url,
        shutdown,
        task,
        journal,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(secs(15), self.task).await;
    }
}

/// Every EventUid in the ledger, by sequence number.
async fn ledger_uids(j: &dyn replay::Journal) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let page = j.audit_records(from, 1000).await.unwrap();
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        out.extend(
            page.iter()
                .map(|r| (r.seq, r.event.event_uid.hyphenated().to_string())),
        );
        from = last + 1;
    }
    out
}

fn missing(ledger: &[(u64, String)], got: &HashMap<String, u32>) -> Vec<u64> {
    ledger
        .iter()
        .filter(|(_, uid)| !got.contains_key(uid))
        .map(|(s, _)| *s)
        .collect()
}

fn all_arrived(
    ledger: &[(u64, String)],
    hec: &HecSim,
    sentinel: &SentinelSim,
) -> Result<(), String> {
    let (h, s) = (
        missing(ledger, &hec.uid_counts()),
        missing(ledger, &sentinel.uid_counts()),
    );
    if h.is_empty() && s.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} record(s) missing at HEC (first {:?}), {} at Sentinel (first {:?})",
            h.len(),
            h.first(),
            s.len(),
            s.first()
        ))
    }
}

async fn sink_states(base_url: &str) -> Vec<String> {
    let ready: serde_json::Value = reqwest::get(format!("{base_url}/health/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ready["audit_sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}={}",
                s["sink"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_lose_nothing_through_an_outage_and_resume_after_a_restart() {
    let athena = fixtures::athena::AthenaSim::start(Default::default())
        .await
        .unwrap();
    let hec = HecSim::start(HecSimOptions::default()).await.unwrap();
    let sentinel = SentinelSim::start(SentinelSimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("journal.db"), &athena.base_url());
    config.audit.sinks = sinks(&hec, &sentinel);
    config.audit.checkpoint_every_records = 25;
    config.audit.checkpoint_every_ms = 500;

    let gw = start(&config).await;
    let api = Api::new(&gw.base_url, API_KEY, API_SECRET);
    // Steady traffic: one audited request every 20 ms; both sinks are down for the middle part.
    for i in 0..90 {
        if i == 20 {
            hec.refuse().await;
            sentinel.refuse().await;
        }
        if i == 40 {
            // Both drivers noticed (otherwise this test would prove nothing).
            let url = gw.base_url.clone();
            eventually("both sinks report the outage", secs(10), || {
                let url = url.clone();
                async move {
                    let states = sink_states(&url).await;
                    if states.iter().all(|s| !s.ends_with("=up")) {
                        Ok(())
                    } else {
                        Err(format!("{states:?}"))
                    }
                }
            })
            .await;
        }
        if i == 60 {
            hec.accept().await.unwrap();
            sentinel.accept().await.unwrap();
        }
        let res = api.get("/v1/exchanges").send().await.unwrap();
        assert_eq!(res.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Health shows both sinks by name.
    let ready: serde_json::Value = reqwest::get(format!("{}/health/ready", gw.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: BTreeSet<&str> = ready["audit_sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sink"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["sentinel", "splunk_hec"]), "{ready}");

    let j = gw.journal.clone();
    let ledger = eventually("every audit record reaches both sinks", secs(30), || {
        let (j, hec, sentinel) = (j.clone(), &hec, &sentinel);
        async move {
            let ledger = ledger_uids(j.as_ref()).await;
            all_arrived(&ledger, hec, sentinel).map(|()| ledger)
        }
    })
    .await;
    assert!(ledger.len() >= 90, "{} records", ledger.len());
    let known: BTreeSet<&String> = ledger.iter().map(|(_, u)| u).collect();
    for (name, got) in [
        ("hec", hec.uid_counts()),
        ("sentinel", sentinel.uid_counts()),
    ] {
        for uid in got.keys() {
            assert!(
                known.contains(uid),
                "{name} holds {uid}, which the ledger does not"
            );
        }
    }
    // Checkpoints were forwarded too.
    let cps = hec
        .events()
        .into_iter()
        .filter(|e| e.kind.as_deref() == Some("checkpoint"))
        .count();
    assert!(cps >= 1, "no checkpoint reached Splunk");
    let states = sink_states(&gw.base_url).await;
    assert_eq!(states, ["splunk_hec=up", "sentinel=up"], "recovered");

    // Cursors and the HEC channel are in the journal; a restart resumes on the same channel.
    let cursor = j.sink_cursor("splunk_hec").await.unwrap().unwrap();
    let channel = cursor.channel.clone().expect("HEC channel stored");
    assert_eq!(hec.channels(), vec![channel.clone()]);
    gw.stop().await;
    let gw = start(&config).await;
    let api = Api::new(&gw.base_url, API_KEY, API_SECRET);
    for _ in 0..5 {
        api.get("/v1/exchanges").send().await.unwrap();
    }
    let j = gw.journal.clone();
    eventually("records after the restart arrive", secs(20), || {
        let (j, hec, sentinel) = (j.clone(), &hec, &sentinel);
        async move {
            let ledger = ledger_uids(j.as_ref()).await;
            all_arrived(&ledger, hec, sentinel)
        }
    })
    .await;
    assert_eq!(
        hec.channels(),
        vec![channel],
        "the channel survives the restart"
    );
    gw.stop().await;
}
