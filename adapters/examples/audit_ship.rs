//! Benchmark driver for `ops/bench/audit-ship.sh`: ships N generated audit records to a Splunk
//! HEC endpoint through the real [`SplunkHecSink`] and [`SinkDriver`] (indexer acknowledgement
//! on: a record counts only once its ackId reported true), from an in-memory source, and prints
//! the rate as one JSON line.
//!
//! ```text
//! cargo run --release -p adapters --example audit_ship -- ship \
//!     --endpoint http://127.0.0.1:8088 --token TOKEN --channel GUID --events 1000000 [--no-gzip]
//!     [--batch-bytes 1000000] [--in-flight 16] [--ack-poll-ms 20]
//! cargo run --release -p adapters --example audit_ship -- envelopes --events N --out FILE
//! ```
//!
//! `envelopes` writes the same records, encoded by the same sink, one HEC envelope per line,
//! for a peer shipper (syslog-ng) to send.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use adapters::AdapterError;
use adapters::sink::{
    AuditSink, DriverConfig, QuarantinedRecord, SinkDriver, SinkJournal, SinkRecord,
};
use adapters::splunk_hec::{SplunkHecConfig, SplunkHecSink};
use async_trait::async_trait;
use time::OffsetDateTime;

/// Records `1..=total`, generated on demand (about 520 bytes of canonical JSON each).
struct Generator {
    total: u64,
    base: OffsetDateTime,
    committed: AtomicU64,
    quarantined: AtomicU64,
    done: tokio::sync::Notify,
}

fn uid(seq: u64) -> String {
    format!("01937a00-0000-7000-8000-{seq:012x}")
}

impl Generator {
    fn record(&self, seq: u64) -> SinkRecord {
        let time = self.base + time::Duration::milliseconds(seq as i64);
        let stamp = time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let json = format!(
            concat!(
                r#"{{"action":"exchange.view","actor":"operator.{}","correlation_id":"corr-{}","#,
                r#""detail":{{"status":200}},"event_uid":"{}","force":"demo","#,
                r#""hash":"{:064x}","object_id":"0193-exchange-{}","object_type":"exchange","#,
                r#""prev_hash":"{:064x}","result":"success","role":"operator","seq":{},"#,
                r#""source_ip":"10.1.2.3","time":"{}","user_agent":"Mozilla/5.0 (bench)"}}"#
            ),
            seq % 97,
            seq,
            uid(seq),
            seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            seq,
            seq.wrapping_sub(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            seq,
            stamp,
        );
        SinkRecord::record(seq, uid(seq), time, json)
    }
}

/// The generator as the driver's journal.
struct Source(Arc<Generator>);

#[async_trait]
impl SinkJournal for Source {
    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<SinkRecord>, AdapterError> {
        let end = after.saturating_add(limit as u64).min(self.0.total);
        Ok((after + 1..=end).map(|seq| self.0.record(seq)).collect())
    }

    async fn commit(&self, _sink: &str, delivered_through: u64) -> Result<(), AdapterError> {
        self.0.committed.store(delivered_through, Ordering::Release);
        if delivered_through >= self.0.total {
            self.0.done.notify_one();
        }
        Ok(())
    }

    async fn quarantine(
        &self,
        _sink: &str,
        _record: &QuarantinedRecord,
    ) -> Result<(), AdapterError> {
        self.0.quarantined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Args {
    mode: String,
    endpoint: String,
    token: String,
    channel: String,
    events: u64,
    gzip: bool,
    batch_bytes: usize,
    in_flight: usize,
    ack_poll_ms: u64,
    out: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        mode: args
            .next()
            .ok_or("usage: audit_ship ship|envelopes [options]")?,
        endpoint: "http://127.0.0.1:8088".into(),
        token: fixtures_token(),
        channel: "0f5d6e1c-5b7a-4d1e-9a55-1b2c3d4e5f60".into(),
        events: 1_000_000,
        gzip: true,
        batch_bytes: 1_000_000,
        in_flight: 16,
        ack_poll_ms: 20,
        out: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoint" => parsed.endpoint = value()?,
            "--token" => parsed.token = value()?,
            "--channel" => parsed.channel = value()?,
            "--events" => parsed.events = value()?.parse().map_err(|e| format!("--events: {e}"))?,
            "--batch-bytes" => {
                parsed.batch_bytes = value()?
                    .parse()
                    .map_err(|e| format!("--batch-bytes: {e}"))?;
            }
            "--in-flight" => {
                parsed.in_flight = value()?.parse().map_err(|e| format!("--in-flight: {e}"))?;
            }
            "--ack-poll-ms" => {
                parsed.ack_poll_ms = value()?
                    .parse()
                    .map_err(|e| format!("--ack-poll-ms: {e}"))?;
            }
            "--out" => parsed.out = Some(value()?),
            "--no-gzip" => parsed.gzip = false,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(parsed)
}

fn fixtures_token() -> String {
    "11111111-2222-3333-4444-555555555555".into()
}

fn sink_config(args: &Args) -> SplunkHecConfig {
    SplunkHecConfig {
        gzip: args.gzip,
        max_batch_bytes: args.batch_bytes,
        driver: DriverConfig {
            max_batch_records: 10_000,
            max_in_flight: args.in_flight,
            ack_poll_ms: args.ack_poll_ms,
            ..DriverConfig::default()
        },
        ..SplunkHecConfig::new(&args.endpoint, args.token.as_str(), &args.channel)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let generator = Arc::new(Generator {
        total: args.events,
        base: OffsetDateTime::now_utc(),
        committed: AtomicU64::new(0),
        quarantined: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
    });
    let cfg = sink_config(&args);
    match args.mode.as_str() {
        "envelopes" => {
            let sink = SplunkHecSink::new(cfg)?;
            let out = args.out.as_deref().ok_or("envelopes needs --out FILE")?;
            let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
            for seq in 1..=args.events {
                let bytes = sink.encode(&generator.record(seq))?;
                // One envelope per line (the encoder already ends each with a newline).
                file.write_all(&bytes)?;
            }
            file.flush()?;
            Ok(())
        }
        "ship" => {
            let driver_cfg = cfg.driver.clone();
            let sink: Box<dyn AuditSink> = Box::new(SplunkHecSink::new(cfg)?);
            let driver = SinkDriver::new(sink, driver_cfg)?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let started = Instant::now();
            let journal = Source(Arc::clone(&generator));
            let task = tokio::spawn(async move {
                driver
                    .run(journal, 0, async move {
                        let _ = stopped.await;
                    })
                    .await
            });
            let wait = async {
                while generator.committed.load(Ordering::Acquire) < generator.total {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(50), generator.done.notified())
                            .await;
                }
            };
            let finished = tokio::time::timeout(Duration::from_secs(600), wait)
                .await
                .is_ok();
            let elapsed = started.elapsed();
            let _ = stop.send(());
            let last = task.await??;
            let rate = args.events as f64 / elapsed.as_secs_f64();
            println!(
                "{{\"shipper\":\"nmpp-gateway SinkDriver+SplunkHecSink\",\"acks\":true,\"gzip\":{},\"events\":{},\"acknowledged_through\":{},\"quarantined\":{},\"seconds\":{:.3},\"events_per_sec\":{:.0},\"finished\":{}}}",
                args.gzip,
                args.events,
                last,
                generator.quarantined.load(Ordering::Relaxed),
                elapsed.as_secs_f64(),
                rate,
                finished
            );
            if finished {
                Ok(())
            } else {
                Err("did not finish within 600 s".into())
            }
        }
        other => Err(format!("unknown mode {other}: ship or envelopes").into()),
    }
}
