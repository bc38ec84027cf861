//! Tests of the tree maths (published RFC 6962 vectors, an independent brute-force reference,
//! property tests), of entries, signed notes and checkpoints.

use super::bundle::{escape_cell, unescape_cell};
use super::checkpoint::Checkpoint;
use super::entry::{AuditEntry, event_result_of, event_type_of};
use super::note::{NoteSigner, NoteVerdict, SignedNote, VerifierKey, generate_key_pair, key_id};
use super::tree::*;
use crate::model::AuditEvent;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn h(hex: &str) -> Hash {
    parse_hex_hash(hex).expect("64 hex digits")
}

fn hashes(hex: &[&str]) -> Vec<Hash> {
    hex.iter().map(|x| h(x)).collect()
}

/// The RFC 6962 test leaves published with Certificate Transparency's reference code.
fn ct_leaves() -> Vec<Hash> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| leaf_hash(&hex::decode(x).expect("hex")))
    .collect()
}

const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

#[test]
fn ledger_roots_match_rfc6962_vectors() {
    let leaves = ct_leaves();
    for n in 0..=8 {
        assert_eq!(root(&leaves[..n]), h(CT_ROOTS[n]), "size {n}");
        let mut f = Frontier::new();
        for l in &leaves[..n] {
            f.push(*l);
        }
        assert_eq!(f.root(), h(CT_ROOTS[n]), "frontier size {n}");
    }
}

#[test]
fn ledger_proofs_match_rfc6962_vectors() {
    let leaves = ct_leaves();
    let cases: [(u64, Vec<Hash>); 2] = [
        (
            0,
            hashes(&[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]),
        ),
        (
            5,
            hashes(&[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
    ];
    for (index, want) in cases {
        assert_eq!(
            inclusion_proof(index, &leaves).unwrap(),
            want,
            "leaf {index}"
        );
        verify_inclusion(index, 8, &leaves[index as usize], &want, &h(CT_ROOTS[8])).unwrap();
    }
    let consistency: [(u64, u64, Vec<Hash>); 3] = [
        (
            2,
            8,
            hashes(&[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]),
        ),
        (
            6,
            8,
            hashes(&[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]),
        ),
        (
            2,
            5,
            hashes(&[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ]),
        ),
    ];
    for (m, n, want) in consistency {
        let got = consistency_proof(m, &leaves[..n as usize]).unwrap();
        assert_eq!(got, want, "{m} -> {n}");
        verify_consistency(
            m,
            n,
            &h(CT_ROOTS[m as usize]),
            &h(CT_ROOTS[n as usize]),
            &want,
        )
        .unwrap();
    }
}

// ---- an independent reference, straight from the RFC 6962 §2.1 definitions ----

fn ref_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn ref_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => Sha256::digest([]).into(),
        1 => d[0],
        n => {
            let k = ref_k(n);
            let mut hasher = Sha256::new();
            hasher.update([1u8]);
            hasher.update(ref_mth(&d[..k]));
            hasher.update(ref_mth(&d[k..]));
            hasher.finalize().into()
        }
    }
}

fn ref_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = ref_k(n);
    if m < k {
        let mut p = ref_path(m, &d[..k]);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &d[k..]);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn ref_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(d)] };
    }
    let k = ref_k(n);
    if m <= k {
        let mut p = ref_subproof(m, &d[..k], b);
        p.push(ref_mth(&d[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &d[k..], false);
        p.push(ref_mth(&d[..k]));
        p
    }
}

fn synthetic(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

#[test]
fn ledger_generation_matches_reference_for_every_small_tree() {
    let all = synthetic(70);
    for n in 1..=all.len() {
        let d = &all[..n];
        let r = ref_mth(d);
        assert_eq!(root(d), r, "root {n}");
        for i in 0..n {
            let p = inclusion_proof(i as u64, d).unwrap();
            assert_eq!(p, ref_path(i, d), "path {i} of {n}");
            verify_inclusion(i as u64, n as u64, &d[i], &p, &r).unwrap();
        }
        for m in 1..=n {
            let p = consistency_proof(m as u64, d).unwrap();
            assert_eq!(p, ref_subproof(m, d, true), "proof {m} -> {n}");
            verify_consistency(m as u64, n as u64, &ref_mth(&d[..m]), &r, &p).unwrap();
        }
    }
}

#[test]
fn ledger_frontier_state_round_trips_and_finds_nodes() {
    let all = synthetic(300);
    let mut f = Frontier::new();
    for (i, l) in all.iter().enumerate() {
        let mut created = Vec::new();
        f.push_with(*l, |n, h| created.push((n, *h)));
        for (n, hash) in created {
            let r = n.range();
            assert_eq!(
                ref_mth(&all[r.start as usize..r.end as usize]),
                hash,
                "node {n:?}"
            );
        }
        let size = i as u64 + 1;
        assert_eq!(f.size(), size);
        assert_eq!(f.root(), ref_mth(&all[..=i]));
        let back = Frontier::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(back, f);
        let json = serde_json::to_string(&f).unwrap();
        let back: Frontier = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        // Every right-edge node of the tree of this size is a frontier suffix.
        for start in 0..size {
            if let Some(hash) = f.suffix_hash(start) {
                assert_eq!(hash, ref_mth(&all[start as usize..=i]));
            }
        }
    }
    assert!(Frontier::from_parts(3, vec![[0; 32]]).is_err());
    assert!(Frontier::from_bytes(&[0; 7]).is_err());
}

#[test]
fn ledger_rejects_impossible_proof_requests() {
    assert!(inclusion_ranges(3, 3).is_err());
    assert!(consistency_ranges(0, 3).is_err());
    assert!(consistency_ranges(4, 3).is_err());
    assert_eq!(
        consistency_ranges(3, 3).unwrap(),
        Vec::<std::ops::Range<u64>>::new()
    );
    let r = [7u8; 32];
    assert!(verify_consistency(0, 3, &r, &r, &[]).is_err());
    assert!(verify_consistency(3, 3, &r, &r, &[]).is_ok());
    assert!(verify_consistency(3, 3, &r, &[8; 32], &[]).is_err());
    assert!(verify_consistency(3, 3, &r, &r, &[r]).is_err());
    assert!(verify_inclusion(3, 3, &r, &[], &r).is_err());
}

proptest! {
    // No regression files: they would land outside this module's directory.
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ledger_prop_inclusion_verifies_and_any_flip_fails(
        n in 1usize..300, i_seed in any::<u64>(), flip in any::<(u64, u8, u8)>()
    ) {
        let leaves = synthetic(n);
        let i = i_seed % n as u64;
        let r = root(&leaves);
        let p = inclusion_proof(i, &leaves).unwrap();
        prop_assert!(verify_inclusion(i, n as u64, &leaves[i as usize], &p, &r).is_ok());
        // Flip one byte somewhere: in a proof node, the leaf or the root.
        let (which, byte, bit) = flip;
        let mask = 1u8 << (bit % 8);
        let slots = p.len() as u64 + 2;
        let at = (which % slots) as usize;
        let (mut p2, mut leaf2, mut r2) = (p.clone(), leaves[i as usize], r);
        match at {
            0 => leaf2[byte as usize % 32] ^= mask,
            1 => r2[byte as usize % 32] ^= mask,
            k => p2[k - 2][byte as usize % 32] ^= mask,
        }
        prop_assert!(verify_inclusion(i, n as u64, &leaf2, &p2, &r2).is_err());
        // A wrong index or size fails too (unless the shape happens to coincide: then the
        // hashes differ).
        if n > 1 {
            let j = (i + 1) % n as u64;
            prop_assert!(verify_inclusion(j, n as u64, &leaves[i as usize], &p, &r).is_err());
        }
        // (A different tree size can verify: the proof's nodes are opaque, which is why the
        // size is signed in the checkpoint.)
        // Truncated or extended proofs fail.
        if !p.is_empty() {
            prop_assert!(verify_inclusion(i, n as u64, &leaves[i as usize], &p[1..], &r).is_err());
        }
        let mut longer = p;
        longer.push(r);
        prop_assert!(verify_inclusion(i, n as u64, &leaves[i as usize], &longer, &r).is_err());
    }

    #[test]
    fn ledger_prop_consistency_verifies_and_any_flip_fails(
        n in 1usize..300, m_seed in any::<u64>(), flip in any::<(u64, u8, u8)>()
    ) {
        let leaves = synthetic(n);
        let m = m_seed % n as u64 + 1;
        let (old, new) = (root(&leaves[..m as usize]), root(&leaves));
        let p = consistency_proof(m, &leaves).unwrap();
        prop_assert!(verify_consistency(m, n as u64, &old, &new, &p).is_ok());
        let (which, byte, bit) = flip;
        let mask = 1u8 << (bit % 8);
        let slots = p.len() as u64 + 2;
        let at = (which % slots) as usize;
        let (mut p2, mut old2, mut new2) = (p.clone(), old, new);
        match at {
            0 => old2[byte as usize % 32] ^= mask,
            1 => new2[byte as usize % 32] ^= mask,
            k => p2[k - 2][byte as usize % 32] ^= mask,
        }
        prop_assert!(verify_consistency(m, n as u64, &old2, &new2, &p2).is_err());
        if m < n as u64 {
            // The proof does not prove a different old size.
            let other = if m > 1 { m - 1 } else { m + 1 };
            if other < n as u64 {
                let old_other = root(&leaves[..other as usize]);
                prop_assert!(verify_consistency(other, n as u64, &old_other, &new, &p).is_err());
            }
        }
    }

    #[test]
    fn ledger_prop_csv_escaping_round_trips(s in ".{0,20}") {
        let escaped = escape_cell(&s);
        prop_assert_eq!(unescape_cell(&escaped), Ok(s.as_str()));
        if let Some(c) = escaped.chars().next() {
            prop_assert!(!matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r'));
        }
    }
}

// ---- entries ----

fn event() -> AuditEvent {
    AuditEvent {
        time: time::macros::datetime!(2026-03-01 10:15:30.123456 +01:00),
        actor: "op.smith".into(),
        role: "operator".into(),
        force: Some("kent".into()),
        action: "exchange.view".into(),
        object_type: Some("exchange".into()),
        object_id: Some("0195a6f0-0000-7000-8000-000000000001".into()),
        result: "success".into(),
        source_ip: Some("10.0.0.7".into()),
        user_agent: Some("curl/8.5".into()),
        correlation_id: None,
        event_uid: uuid::Uuid::from_u128(0x0195a6f0_0000_7000_8000_0000000000aa),
        detail: Some(serde_json::json!({"status": 200, "b": [1.0, "x"]})),
    }
}

#[test]
fn ledger_entry_canonical_json_is_stable() {
    let e = AuditEntry::from_event(42, &event()).unwrap();
    let json = String::from_utf8(e.canonical_json().unwrap()).unwrap();
    // RFC 8785: keys sorted by UTF-16 code units, numbers in ECMAScript form, no spaces; absent
    // optional fields left out; time in UTC.
    assert_eq!(
        json,
        r#"{"ActorRole":"operator","ActorUsername":"op.smith","AdditionalFields":{"b":[1,"x"],"status":200},"EntryVersion":1,"EventResult":"Success","EventResultDetails":"success","EventStartTime":"2026-03-01T09:15:30.123456Z","EventType":"Read","EventUid":"0195a6f0-0000-7000-8000-0000000000aa","Force":"kent","HttpUserAgent":"curl/8.5","Object":"exchange:0195a6f0-0000-7000-8000-000000000001","ObjectId":"0195a6f0-0000-7000-8000-000000000001","ObjectType":"exchange","Operation":"exchange.view","Seq":42,"SrcIpAddr":"10.0.0.7"}"#
    );
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(json.as_bytes());
    assert_eq!(
        e.leaf_hash().unwrap(),
        <[u8; 32]>::from(Sha256::digest(&bytes))
    );
    // Round trip through JSON keeps the hash.
    let back = AuditEntry::from_json(json.as_bytes()).unwrap();
    assert_eq!(back.leaf_hash().unwrap(), e.leaf_hash().unwrap());
}

#[test]
fn ledger_entry_every_field_is_hashed() {
    let base = AuditEntry::from_event(7, &event()).unwrap();
    let h0 = base.leaf_hash().unwrap();
    type Edit = Box<dyn Fn(&mut AuditEntry)>;
    let edits: Vec<Edit> = vec![
        Box::new(|e| e.seq += 1),
        Box::new(|e| e.entry_version += 1),
        Box::new(|e| e.event_start_time.push('x')),
        Box::new(|e| e.event_type = "Set".into()),
        Box::new(|e| e.operation.push('x')),
        Box::new(|e| e.object = None),
        Box::new(|e| e.object_type = Some("incident".into())),
        Box::new(|e| e.object_id = None),
        Box::new(|e| e.event_result = "Failure".into()),
        Box::new(|e| e.event_result_details = "denied".into()),
        Box::new(|e| e.actor_username.push('x')),
        Box::new(|e| e.actor_role = "auditor".into()),
        Box::new(|e| e.force = Some("essex".into())),
        Box::new(|e| e.src_ip_addr = None),
        Box::new(|e| e.http_user_agent = Some("x".into())),
        Box::new(|e| e.correlation_id = Some("c".into())),
        Box::new(|e| e.event_uid.push('x')),
        Box::new(|e| e.additional_fields = None),
    ];
    for (i, edit) in edits.iter().enumerate() {
        let mut e = base.clone();
        edit(&mut e);
        assert_ne!(
            e.leaf_hash().unwrap(),
            h0,
            "edit {i} left the hash unchanged"
        );
    }
    // Empty and absent optional values hash alike (CSV cannot tell them apart).
    let mut a = base.clone();
    a.correlation_id = Some(String::new());
    a.additional_fields = Some(serde_json::Value::Null);
    let mut b = base;
    b.correlation_id = None;
    b.additional_fields = None;
    assert_eq!(a.leaf_hash().unwrap(), b.leaf_hash().unwrap());
}

#[test]
fn ledger_entry_maps_asim_fields() {
    assert_eq!(event_type_of("exchange.view"), "Read");
    assert_eq!(event_type_of("incident.create"), "Create");
    assert_eq!(event_type_of("config.update"), "Set");
    assert_eq!(event_type_of("audit.delete"), "Delete");
    assert_eq!(event_type_of("exchange.replay"), "Execute");
    assert_eq!(event_type_of("auth.failure"), "Other");
    assert_eq!(event_result_of("duplicate"), "Success");
    assert_eq!(event_result_of("denied"), "Failure");
    assert_eq!(event_result_of("weird"), "NA");
    let mut ev = event();
    ev.object_id = Some(String::new());
    let e = AuditEntry::from_event(1, &ev).unwrap();
    assert_eq!(e.object.as_deref(), Some("exchange"));
    assert_eq!(e.object_id, None);
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just(1u64 << 53),
            Just((1u64 << 53) - 1),
            Just((1u64 << 53) + 1)
        ]
        .prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            // Members in the order drawn (not sorted), so the writers must sort them.
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("(.|\\PC|[\\x00-\\x1f\"\\\\/\\u{7f}\\u{2028}\\u{1F600}]){0,12}")
}

prop_compose! {
    fn audit_entry()(
        seq in 1u64..(1 << 53),
        texts in prop::collection::vec("(.|[\\x00-\\x1f\"\\\\\\u{7f}\\u{e9}\\u{1F600}]){0,16}", 9),
        opts in prop::collection::vec(opt_text(), 7),
        extra in prop::option::of(json_value()),
        version in 0u32..5,
    ) -> AuditEntry {
        AuditEntry {
            seq,
            entry_version: version,
            event_start_time: texts[0].clone(),
            event_type: texts[1].clone(),
            operation: texts[2].clone(),
            object: opts[0].clone(),
            object_type: opts[1].clone(),
            object_id: opts[2].clone(),
            event_result: texts[3].clone(),
            event_result_details: texts[4].clone(),
            actor_username: texts[5].clone(),
            actor_role: texts[6].clone(),
            force: opts[3].clone(),
            src_ip_addr: opts[4].clone(),
            http_user_agent: opts[5].clone(),
            correlation_id: opts[6].clone(),
            event_uid: texts[7].clone(),
            additional_fields: extra,
        }
    }
}

prop_compose! {
    fn audit_event()(
        secs in -62_135_596_800i64..253_402_300_799,
        nanos in 0u32..1_000_000_000,
        offset_min in -1439i32..1440,
        texts in prop::collection::vec("(.|[\\x00-\\x1f\"\\\\\\u{7f}\\u{e9}\\u{2028}\\u{1F600}]){0,16}", 4),
        opts in prop::collection::vec(opt_text(), 6),
        uid in any::<u128>(),
        detail in prop::option::of(json_value()),
    ) -> AuditEvent {
        let offset = time::UtcOffset::from_whole_seconds(offset_min * 60).unwrap();
        AuditEvent {
            time: time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(offset),
            actor: texts[0].clone(),
            role: texts[1].clone(),
            force: opts[0].clone(),
            action: texts[2].clone(),
            object_type: opts[1].clone(),
            object_id: opts[2].clone(),
            result: texts[3].clone(),
            source_ip: opts[3].clone(),
            user_agent: opts[4].clone(),
            correlation_id: opts[5].clone(),
            event_uid: uuid::Uuid::from_u128(uid),
            detail,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The fast canonical writer and the general RFC 8785 canonicaliser agree byte for byte.
    #[test]
    fn ledger_prop_fast_canonical_json_matches_rfc8785_canonicaliser(e in audit_entry()) {
        prop_assert_eq!(
            String::from_utf8(e.canonical_json().unwrap()).unwrap(),
            String::from_utf8(e.canonical_json_general().unwrap()).unwrap()
        );
    }

    /// The chain hash's fast canonical writer and the general RFC 8785 canonicaliser agree byte
    /// for byte (and so the chain hashes of records written before and after it agree).
    #[test]
    fn audit_prop_fast_chain_canonical_matches_rfc8785_canonicaliser(
        seq in prop_oneof![1u64..(1 << 53), Just((1u64 << 53) - 1), Just(1u64 << 53), Just(u64::MAX)],
        ev in audit_event(),
    ) {
        prop_assert_eq!(
            String::from_utf8(crate::audit::chain_canonical(seq, &ev).unwrap()).unwrap(),
            String::from_utf8(crate::audit::chain_canonical_general(seq, &ev).unwrap()).unwrap()
        );
    }
}

/// A chain hash pinned from the general canonicaliser before the fast writer existed: records
/// already stored keep verifying.
#[test]
fn audit_chain_hash_is_stable() {
    let prev = "ab".repeat(32);
    assert_eq!(
        crate::audit::chain_hash(&prev, 42, &event()),
        "af1657a7d24659b541acb84eb065945717578a4efafa41fd2b46724c0efa2c2c"
    );
    let mut bare = event();
    bare.force = None;
    bare.detail = None;
    bare.user_agent = None;
    assert_eq!(
        crate::audit::chain_hash(&prev, 1, &bare),
        "c2c574f0b8480120aee6fb429460afac1946bf296021198b159b1782f4e61804"
    );
}

// ---- signed notes ----

// The example key and note published with Go's golang.org/x/mod/sumdb/note.
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

#[test]
fn ledger_note_matches_published_go_vector() {
    let signer = NoteSigner::parse(GO_SKEY).unwrap();
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.to_skey(), GO_SKEY);
    assert_eq!(signer.verifier().to_string(), GO_VKEY);
    let v = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(v, signer.verifier());
    let note = signer.sign(GO_TEXT).unwrap();
    assert_eq!(note, format!("{GO_TEXT}\n{GO_NOTE_SIG}"));
    assert_eq!(SignedNote::open(&note, &[v]).unwrap(), GO_TEXT);
    assert!(format!("{signer:?}").contains("PeterNeumann"));
    assert!(!format!("{signer:?}").contains("AYEKFAL"));
}

#[test]
fn ledger_note_rejects_wrong_key_altered_body_forged_signature_and_name() {
    let signer = NoteSigner::from_seed("nmpp.example/audit", &[1; 32]);
    let other = NoteSigner::from_seed("nmpp.example/audit", &[2; 32]);
    let v = signer.verifier();
    let note = signer.sign("hello\nworld\n").unwrap();
    assert!(SignedNote::open(&note, std::slice::from_ref(&v)).is_ok());

    // Wrong key (same name, other key: other key id, so unknown).
    assert!(matches!(
        SignedNote::parse(&note).unwrap().check(&[other.verifier()]),
        NoteVerdict::UnknownKeys(_)
    ));
    // Altered body.
    let altered = note.replace("world", "w0rld");
    assert!(matches!(
        SignedNote::parse(&altered)
            .unwrap()
            .check(std::slice::from_ref(&v)),
        NoteVerdict::BadSignature { .. }
    ));
    // Forged signature: right key id, random signature bytes.
    let mut parsed = SignedNote::parse(&note).unwrap();
    parsed.signatures[0].signature = vec![0x42; 64];
    assert!(matches!(
        SignedNote::parse(&parsed.encode())
            .unwrap()
            .check(std::slice::from_ref(&v)),
        NoteVerdict::BadSignature { .. }
    ));
    // Mismatched key name: the right signature under another name is not the key's.
    let renamed = note.replace(
        "\u{2014} nmpp.example/audit ",
        "\u{2014} nmpp.example/other ",
    );
    assert!(SignedNote::open(&renamed, std::slice::from_ref(&v)).is_err());
    // A second, unknown signature is ignored.
    let mut two = SignedNote::parse(&note).unwrap();
    two.signatures.push(other.sign_line("hello\nworld\n"));
    assert!(SignedNote::open(&two.encode(), std::slice::from_ref(&v)).is_ok());
    // Malformed notes.
    for bad in [
        "no blank line\n\u{2014} a AAAA\n",
        "text\n\nnot a signature\n",
        "text\n\n\u{2014} a !!!\n",
        "text\n\n",
        "te\u{1}xt\n\n\u{2014} a AAAAAAAA\n",
    ] {
        assert!(SignedNote::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ledger_keys_generate_and_parse() {
    let (skey, vkey) = generate_key_pair("nmpp-gateway.example/audit").unwrap();
    let s = NoteSigner::parse(&skey).unwrap();
    let v = VerifierKey::parse(&vkey).unwrap();
    assert_eq!(s.verifier(), v);
    assert_eq!(v.key_id(), key_id(v.name(), &v.public_key()));
    let note = s.sign("x\n").unwrap();
    assert!(SignedNote::open(&note, &[v]).is_ok());
    // Tampered encodings are refused.
    assert!(VerifierKey::parse(&vkey.replacen('+', "+0", 1)).is_err());
    assert!(
        VerifierKey::parse(&format!("other{vkey}")).is_err(),
        "key id bound to the name"
    );
    assert!(NoteSigner::parse(&vkey).is_err());
    assert!(NoteSigner::parse(&skey.replace("PRIVATE+KEY+", "PRIVATE+KEY+x")).is_err());
    assert!(VerifierKey::parse("a b+00000000+AQ==").is_err());
    assert!(generate_key_pair("has space").is_err());
    assert_ne!(
        generate_key_pair("n").unwrap().0,
        generate_key_pair("n").unwrap().0
    );
}

// ---- checkpoints ----

#[test]
fn ledger_checkpoint_body_round_trips_and_is_strict() {
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse_body(text).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.body(), text);
    let with_ext = format!("{text}ext one\n");
    assert_eq!(
        Checkpoint::parse_body(&with_ext).unwrap().extensions,
        ["ext one"]
    );
    for bad in [
        "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
        "o\n1\nnot base64\n",
        "o\n1\nAAAA\n",
        "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
        "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    ] {
        assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ledger_checkpoint_signs_and_opens() {
    let signer = NoteSigner::from_seed("nmpp.example/audit", &[9; 32]);
    let cp = Checkpoint::new("nmpp.example/audit", 8, h(CT_ROOTS[8]));
    let note = cp.sign(&signer).unwrap();
    assert!(note.starts_with(&cp.body()));
    assert_eq!(Checkpoint::open(&note, &[signer.verifier()]).unwrap(), cp);
    let other = NoteSigner::from_seed("nmpp.example/audit", &[10; 32]);
    assert!(Checkpoint::open(&note, &[other.verifier()]).is_err());
    let forged = note.replace("\n8\n", "\n9\n");
    assert!(Checkpoint::open(&forged, &[signer.verifier()]).is_err());
}
