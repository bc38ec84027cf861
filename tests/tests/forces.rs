//! Many forces in one gateway: each with its own records system, iHub receiver, change
//! detection and journal entries. Two forces run side by side on the same crime references
//! (the worst case for a mix-up); nothing of one may reach the other's adapters, events or
//! journal entries.

use fixtures::{
    athena::{AthenaSim, AthenaSimOptions},
    dataset::{Dataset, Mutation},
    ihub::{IhubSim, IhubSimOptions},
};
use nmpp_tests::{
    FORCE, IHUB_FORCE_ID,
    detect::{DetectRig, SeenEvent, athena_records, detecting_force, seen},
    eventually, sdm, secs,
};
use replay::ExchangeFilter;
use std::collections::BTreeSet;

const OTHER: &str = "otherford";
const OTHER_ID: u32 = 43;

async fn wait_for(ihub: &IhubSim, what: &str, f: impl Fn(&SeenEvent) -> bool) {
    eventually(what, secs(30), || {
        let ok = seen(ihub).iter().any(&f);
        async move { if ok { Ok(()) } else { Err("not yet".into()) } }
    })
    .await;
}

async fn recorded(ihub: &IhubSim) {
    eventually("every case recorded", secs(30), || {
        let n = seen(ihub)
            .iter()
            .filter(|e| e.event_type == "CASE_RECORDED")
            .count();
        async move {
            if n >= 6 {
                Ok(())
            } else {
                Err(format!("{n} of 6"))
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_forces_side_by_side_never_leak_into_each_other() {
    let other_athena = AthenaSim::start(AthenaSimOptions::default())
        .await
        .expect("athena");
    let other_ihub = IhubSim::start(IhubSimOptions::default())
        .await
        .expect("ihub");
    // Otherford has its own mapping: its Athena codes "not known" gender (GNDR_0003) as X.
    let specs = tempfile::tempdir().expect("dir");
    std::fs::write(
        specs.path().join("gender.toml"),
        "id = \"nmpp-to-athena\"\nversion = \"1.1.0\"\nextends = \"nmpp-to-athena\"\n\
         [codes.athena-gender]\nmap = { GNDR_0003 = \"X\" }\n",
    )
    .expect("spec");
    let rig = DetectRig::start(|c, _, _| {
        let mut other = detecting_force(
            "Otherford Police",
            OTHER_ID,
            athena_records(&other_athena),
            &other_ihub,
        );
        other.mappings = Some(specs.path().to_owned());
        c.forces.insert(OTHER.into(), other);
    })
    .await;
    // The same dataset — the same crime references — in both forces' Athena.
    let dataset = Dataset::builtin();
    rig.athena.load_dataset(&dataset);
    other_athena.load_dataset(&dataset);
    recorded(&rig.ihub).await;
    recorded(&other_ihub).await;

    // One change in each force's Athena.
    rig.athena
        .apply(&Mutation::SetStatus {
            crime_reference: "42/00103/26".into(),
            status: "CSTS_0002".into(),
            at: "2026-03-01T09:00:00Z".into(),
        })
        .expect("applies");
    other_athena
        .apply(&Mutation::AssignOfficer {
            crime_reference: "42/00102/26".into(),
            officer: "OFF-1004".into(),
            supervisor: None,
            at: "2026-03-01T09:00:01Z".into(),
        })
        .expect("applies");
    wait_for(&rig.ihub, "testshire's status change", |e| {
        e.event_type == "CASE_STATUS_CHANGED"
    })
    .await;
    wait_for(&other_ihub, "otherford's officer change", |e| {
        e.event_type == "CASE_OIC_CHANGED"
    })
    .await;
    // A sentinel in each force: once it is in, the other force's change would have been too.
    rig.athena
        .apply(&Mutation::SetStatus {
            crime_reference: "42/00106/26".into(),
            status: "CSTS_0004".into(),
            at: "2026-03-01T09:00:02Z".into(),
        })
        .expect("applies");
    other_athena
        .apply(&Mutation::SetStatus {
            crime_reference: "42/00106/26".into(),
            status: "CSTS_0005".into(),
            at: "2026-03-01T09:00:03Z".into(),
        })
        .expect("applies");
    wait_for(&rig.ihub, "testshire's sentinel", |e| {
        e.subject == "42/00106/26" && e.event_type == "CASE_STATUS_CHANGED"
    })
    .await;
    wait_for(&other_ihub, "otherford's sentinel", |e| {
        e.subject == "42/00106/26" && e.event_type == "CASE_STATUS_CHANGED"
    })
    .await;

    // 6 recorded + 2 changes each; deliveries run concurrently, so wait for all of them.
    for ihub in [&rig.ihub, &other_ihub] {
        eventually("eight events", secs(30), || {
            let n = seen(ihub).len();
            async move {
                if n >= 8 {
                    Ok(())
                } else {
                    Err(format!("{n} of 8"))
                }
            }
        })
        .await;
    }
    // Events: each receiver has only its force's events.
    let mine = seen(&rig.ihub);
    let theirs = seen(&other_ihub);
    assert!(
        mine.iter()
            .all(|e| e.force_identifier == IHUB_FORCE_ID.to_string()),
        "{mine:#?}"
    );
    assert!(
        theirs
            .iter()
            .all(|e| e.force_identifier == OTHER_ID.to_string()),
        "{theirs:#?}"
    );
    assert!(
        !mine.iter().any(|e| e.event_type == "CASE_OIC_CHANGED"),
        "{mine:#?}"
    );
    assert!(
        !theirs
            .iter()
            .any(|e| e.subject == "42/00103/26" && e.event_type == "CASE_STATUS_CHANGED"),
        "{theirs:#?}"
    );
    let sentinel = |v: &[SeenEvent]| {
        v.iter()
            .find(|e| e.subject == "42/00106/26" && e.event_type == "CASE_STATUS_CHANGED")
            .map(|e| e.payload["status"].clone())
    };
    assert_eq!(sentinel(&mine), Some("CSTS_0004".into()));
    assert_eq!(sentinel(&theirs), Some("CSTS_0005".into()));
    // The same crime reference recorded in two forces is two different events.
    let ids = |v: &[SeenEvent]| v.iter().map(|e| e.id.clone()).collect::<BTreeSet<_>>();
    assert!(ids(&mine).is_disjoint(&ids(&theirs)));
    assert_eq!(mine.len(), 8, "{mine:#?}");
    assert_eq!(theirs.len(), 8, "{theirs:#?}");

    // Journal: each force's exchanges carry only its own events.
    for (force, id, events) in [(FORCE, IHUB_FORCE_ID, &mine), (OTHER, OTHER_ID, &theirs)] {
        let filter = ExchangeFilter {
            force: Some(force.into()),
            ..ExchangeFilter::default()
        };
        let page = rig.journal.list(&filter, None, 1000).await.expect("list");
        assert_eq!(page.items.len(), events.len(), "{force}");
        for x in &page.items {
            let p = rig
                .journal
                .payloads(x.id)
                .await
                .expect("payloads")
                .expect("stored");
            let ev: serde_json::Value = serde_json::from_slice(&p.original).expect("json");
            assert_eq!(ev["forceIdentifier"], id, "{force}: {ev}");
            assert!(ids(events).contains(ev["eventId"].as_str().unwrap_or_default()));
        }
    }

    // Deliveries: a submission for each force reaches only that force's Athena, mapped through
    // that force's own mapping.
    let api = rig.api();
    for (force_id, to, not_to, gender, mapping) in [
        (
            IHUB_FORCE_ID,
            &rig.athena,
            &other_athena,
            "M",
            "nmpp-to-athena@1.0.0",
        ),
        (
            OTHER_ID,
            &other_athena,
            &rig.athena,
            "X",
            "nmpp-to-athena@1.1.0",
        ),
    ] {
        let mut doc = sdm::online_crime_report();
        sdm::submission_mut(&mut doc)["attributes"]["forceIdentifier"] = force_id.into();
        let key = sdm::submission_id(&doc);
        let accepted = api.submit_ok(&doc).await;
        api.wait_for_status(&accepted.exchange_id, "delivered", secs(30))
            .await;
        let record = to
            .record_by_key(&key)
            .unwrap_or_else(|| panic!("force {force_id}: not delivered"));
        let victim = record
            .people
            .iter()
            .find(|p| p.surname.as_deref() == Some("Crockett"))
            .expect("the victim");
        assert_eq!(victim.gender.as_deref(), Some(gender), "force {force_id}");
        let id = accepted.exchange_id.parse().expect("uuid");
        let detail = rig.journal.get(id).await.expect("get").expect("stored");
        assert_eq!(
            detail.mapping_version.as_deref(),
            Some(mapping),
            "force {force_id}"
        );
        assert!(
            not_to.record_by_key(&key).is_none(),
            "force {force_id}: leaked"
        );
    }
    rig.stop().await;
}
