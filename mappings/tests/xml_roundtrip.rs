//! Property: writing a value as XML and reading it back gives the same value, for every value
//! in the reader's canonical form (see `mappings::xml`): leaves are strings, lists have two or
//! more items, an object has attributes or children, and its `#text` is not blank.

use mappings::xml::{WriteOptions, from_xml, to_xml};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,7}"
}

/// Any text XML 1.0 can carry, markup characters and line breaks included.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => prop_oneof![Just('&'), Just('<'), Just('>'), Just('"'), Just('\''), Just(' '),
                             Just('\n'), Just('\r'), Just('\t'), Just('é'), Just('€'), Just('😀'), Just(']')],
        ],
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn non_blank_text() -> impl Strategy<Value = String> {
    (text(), proptest::char::range('A', 'Z')).prop_map(|(t, c)| format!("{t}{c}"))
}

fn element() -> impl Strategy<Value = Value> {
    let leaf = text().prop_map(Value::String);
    leaf.prop_recursive(4, 40, 4, |inner| {
        let item = prop_oneof![text().prop_map(Value::String), inner.clone()]
            .prop_filter("no lists in lists", |v| !v.is_array());
        let child = prop_oneof![
            3 => inner,
            1 => proptest::collection::vec(item, 2..4).prop_map(Value::Array),
        ];
        (
            proptest::collection::btree_map(name(), text(), 0..3),
            proptest::collection::btree_map(name(), child, 0..4),
            proptest::option::of(non_blank_text()),
        )
            .prop_filter_map(
                "an object needs attributes or children",
                |(attrs, children, text)| {
                    if attrs.is_empty() && children.is_empty() {
                        return None;
                    }
                    let mut map = Map::new();
                    for (k, v) in attrs {
                        map.insert(format!("@{k}"), Value::String(v));
                    }
                    if let Some(t) = text {
                        map.insert("#text".into(), Value::String(t));
                    }
                    for (k, v) in children {
                        map.insert(k, v);
                    }
                    Some(Value::Object(map))
                },
            )
    })
}

fn root() -> impl Strategy<Value = Value> {
    element().prop_filter("the root is an object", Value::is_object)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn write_then_read_is_identity(value in root(), indent in prop_oneof![Just(0_usize), Just(2)]) {
        let xml = to_xml("Root", &value, WriteOptions { indent, declaration: indent > 0 })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (name, back) = from_xml(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(name, "Root");
        prop_assert_eq!(back, value, "through {}", xml);
    }

    #[test]
    fn reading_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = from_xml(&text);
    }

    #[test]
    fn reading_mangled_xml_never_panics(value in root(), cut in 0_usize..400, junk in "[<>&;/\"'=a-z]{0,6}") {
        let xml = to_xml("Root", &value, WriteOptions::default()).unwrap_or_default();
        let mut at = cut.min(xml.len());
        while !xml.is_char_boundary(at) {
            at -= 1;
        }
        let mangled = format!("{}{junk}{}", &xml[..at], &xml[at..]);
        let _ = from_xml(&mangled);
    }
}
