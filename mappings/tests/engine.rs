//! Engine semantics through small specs, and the built-in specs' documentation.

use mappings::{Mappings, xml};
use serde_json::{Value, json};

fn with(text: &str) -> Mappings {
    Mappings::from_sources([("test.toml", text)]).unwrap_or_else(|e| panic!("{e}"))
}

fn map(text: &str, source: &Value) -> Result<Value, String> {
    with(text).map("t", source).map_err(|e| e.to_string())
}

const HEAD: &str =
    "id = \"t\"\nversion = \"1.0.0\"\n[source]\nmodel = \"in@1\"\n[target]\nmodel = \"out@1\"\n";

#[test]
fn values_transforms_defaults_and_required() {
    let spec = format!(
        r#"{HEAD}
[[rule]]
to = "name"
from = "first | fallback"
transform = ["trim", "uppercase"]

[[rule]]
to = "flag"
from = "flag"
transform = ["boolean"]

[[rule]]
to = "n"
from = "n"
transform = ["integer"]

[[rule]]
to = "tags[]"
from = "tags[*]"

[[rule]]
to = "status"
from = "status"
default = "open"

[[rule]]
to = "nested.deep.value"
const = 1

[[rule]]
to = "id"
from = "id"
required = true
"#
    );
    let out = map(
        &spec,
        &json!({ "fallback": "  ada ", "flag": "TRUE", "n": "-7", "tags": ["a", "", null, "b"], "id": "x", "first": "" }),
    );
    assert_eq!(
        out,
        Ok(
            json!({ "name": "ADA", "flag": true, "n": -7, "tags": ["a", "b"], "status": "open", "nested": { "deep": { "value": 1 } }, "id": "x" })
        )
    );
    let err = map(&spec, &json!({})).err().unwrap_or_default();
    assert_eq!(
        err,
        "t@1.0.0: id: rule `id` (test.toml:36): required value is missing (nothing at `id`)"
    );
    let err = map(&spec, &json!({ "id": "x", "flag": "perhaps" }))
        .err()
        .unwrap_or_default();
    assert_eq!(
        err,
        "t@1.0.0: /flag: rule `flag` (test.toml:13): boolean: expected a boolean (true/false), found \"perhaps\""
    );
}

#[test]
fn several_values_into_one_field_is_an_error_not_a_guess() {
    let spec = format!("{HEAD}\n[[rule]]\nto = \"x\"\nfrom = \"xs[*]\"\n");
    let err = map(&spec, &json!({ "xs": ["a", "b"] }))
        .err()
        .unwrap_or_default();
    assert_eq!(
        err,
        "t@1.0.0: /xs/1: rule `x` (test.toml:8): yields 2 values but `x` takes one (end `to` with `[]` to collect them)"
    );
}

#[test]
fn first_all_and_conditions() {
    let spec = format!(
        r#"{HEAD}
[[rule]]
to = "kind"
first = [
  {{ when = {{ path = "type", equals = "car" }}, const = "vehicle" }},
  {{ when = {{ all = [{{ exists = "legs" }}, {{ not = {{ is_true = "robot" }} }}] }}, const = "animal" }},
  {{ when = {{ path = "size", one_of = [1, 2] }}, const = "small" }},
  {{ const = "thing" }},
]

[[rule]]
to = "labels[]"
all = [
  {{ when = {{ exists = ["a", "b"] }}, const = "a-or-b" }},
  {{ when = {{ absent = "c" }}, const = "no-c" }},
  {{ from = "extra[*]", transform = ["string"] }},
]
"#
    );
    let m = with(&spec);
    let kind = |v: Value| {
        m.map("t", &v)
            .map(|o| o["kind"].clone())
            .unwrap_or_default()
    };
    assert_eq!(kind(json!({ "type": "car" })), json!("vehicle"));
    assert_eq!(
        kind(json!({ "legs": 4, "robot": "false" })),
        json!("animal")
    );
    assert_eq!(kind(json!({ "legs": 4, "robot": "TRUE" })), json!("thing"));
    assert_eq!(kind(json!({ "size": "2" })), json!("small"));
    assert_eq!(kind(json!({})), json!("thing"));
    let out = m
        .map("t", &json!({ "b": 1, "extra": [5, true] }))
        .unwrap_or_default();
    assert_eq!(out["labels"], json!(["a-or-b", "no-c", "5", "true"]));
}

#[test]
fn for_each_rest_and_positions() {
    let spec = format!(
        r#"{HEAD}
[[rule]]
to = "people[]"
for_each = "rows[kind!=robot,alien]"
as = "p"
use = "person"

[[rule]]
to = "extra"
rest = "$doc"
except = ["rows"]

[[block.person]]
to = "@ref"
from = "$p.id"
transform = [{{ position_in = "$doc.rows[*].id" }}, {{ format = "p{{}}" }}]

[[block.person]]
to = "name"
from = "attrs.name"

[[block.person]]
to = "extra"
rest = "attrs"
"#
    );
    let out = map(
        &spec,
        &json!({
            "rows": [
                { "id": "a", "kind": "human", "attrs": { "name": "Ann", "age": 30 } },
                { "id": "b", "kind": "robot", "attrs": { "name": "R2" } },
                { "id": "c", "attrs": { "name": "Cy", "hat": null } }
            ],
            "meta": { "v": 1 }
        }),
    );
    assert_eq!(
        out,
        Ok(json!({
            "people": [
                { "@ref": "p1", "name": "Ann", "extra": { "age": 30 } },
                { "@ref": "p3", "name": "Cy" }
            ],
            "extra": { "meta": { "v": 1 } }
        }))
    );
}

/// How rules writing the same target meet: a copied object or list is written into, two
/// objects merge, anything else is an error; key order is first-write order. Compared as
/// text, since `Value` equality ignores key order.
#[test]
fn writes_to_one_target_merge_extend_or_fail() {
    let spec = format!(
        r#"{HEAD}
[[rule]]
to = "copied"
from = "obj"

[[rule]]
to = "copied.added"
const = 2

[[rule]]
to = "list"
from = "arr"

[[rule]]
to = "list[]"
const = "c"

[[rule]]
to = "merged"
from = "obj"

[[rule]]
to = "merged"
from = "other"

[[rule]]
to = "later"
rest = "objs[*]"
except = ["skip"]

[[rule]]
to = "copied.deeper.x"
from = "n"
"#
    );
    let source = json!({
        "obj": { "b": 1, "a": { "k": true } },
        "other": { "z": null, "c": [1] },
        "arr": ["a", "b"],
        "objs": [ { "p": 1, "q": 2, "skip": 0 }, { "r": 3, "p": 4 } ],
        "n": 5
    });
    let m = with(&spec);
    let out = m.map("t", &source).unwrap_or_else(|e| panic!("{e}"));
    let text = r#"{"copied":{"b":1,"a":{"k":true},"added":2,"deeper":{"x":5}},"list":["a","b","c"],"merged":{"b":1,"a":{"k":true},"z":null,"c":[1]},"later":{"p":4,"q":2,"r":3}}"#;
    assert_eq!(serde_json::to_string(&out).ok().as_deref(), Some(text));
    assert_eq!(m.render("t", &source).ok().as_deref(), Some(text));

    let fails = |rules: &str, source: Value| -> String {
        let m = with(&format!("{HEAD}\n{rules}"));
        match m.map("t", &source) {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(e) => e.to_string(),
        }
    };
    let twice = "[[rule]]\nto = \"o\"\nfrom = \"a\"\n\n[[rule]]\nto = \"o\"\nfrom = \"b\"\n";
    let err = fails(twice, json!({ "a": { "x": 1 }, "b": { "y": 2, "x": 3 } }));
    assert!(err.contains("`o.x` is written twice"), "{err}");
    let err = fails(twice, json!({ "a": { "x": 1 }, "b": 7 }));
    assert!(
        err.contains("`o` is already written by an earlier rule"),
        "{err}"
    );
    let err = fails(
        "[[rule]]\nto = \"s\"\nfrom = \"a\"\n\n[[rule]]\nto = \"s.x\"\nconst = 1\n",
        json!({ "a": "text" }),
    );
    assert!(
        err.contains("`s` of `s.x` is already a value, not an object"),
        "{err}"
    );
    let err = fails(
        "[[rule]]\nto = \"s\"\nfrom = \"a\"\n\n[[rule]]\nto = \"s[]\"\nconst = 1\n",
        json!({ "a": { "x": 1 } }),
    );
    assert!(
        err.contains("`s[]` is already a value, not a list"),
        "{err}"
    );
}

#[test]
fn code_tables_translate_keep_omit_or_default() {
    let spec = format!(
        r#"{HEAD}
[[rule]]
to = "strict"
from = "c"
codes = "strict"

[[rule]]
to = "kept"
from = "c"
codes = "keep"

[[rule]]
to = "omitted"
from = "c"
codes = "omit"

[[rule]]
to = "defaulted"
from = "c"
codes = "dflt"

[[rule]]
to = "checked"
from = "g"
codes = "GNDR"

[codes.strict]
map = {{ A = "alpha" }}

[codes.keep]
unknown = "keep"
map = {{ A = "alpha" }}

[codes.omit]
unknown = "omit"
map = {{ A = "alpha" }}

[codes.dflt]
default = "other"
map = {{ A = "alpha" }}
"#
    );
    assert_eq!(
        map(&spec, &json!({ "c": "A", "g": "GNDR_0001" })),
        Ok(
            json!({ "strict": "alpha", "kept": "alpha", "omitted": "alpha", "defaulted": "alpha", "checked": "GNDR_0001" })
        )
    );
    let err = map(&spec, &json!({ "c": "B" })).err().unwrap_or_default();
    assert_eq!(
        err,
        "t@1.0.0: /c: rule `strict` (test.toml:8): code \"B\" is not in code list `strict`"
    );
    let unchecked = spec.replace("codes = \"strict\"", "codes = \"keep\"");
    assert_eq!(
        map(&unchecked, &json!({ "c": "B" })),
        Ok(json!({ "strict": "B", "kept": "B", "defaulted": "other" }))
    );
    let err = map(&unchecked, &json!({ "g": "GNDR_7" }))
        .err()
        .unwrap_or_default();
    assert!(
        err.ends_with("code \"GNDR_7\" is not in code list GNDR (Gender)"),
        "{err}"
    );
}

#[test]
fn sql_rows_are_objects_of_columns() {
    let spec = r#"
id = "warehouse-crime"
version = "1.0.0"
[source]
model = "athena-dw-crime-row@1"
format = "row"
[target]
model = "case@1"

[[rule]]
to = "crimeReference"
from = "CRIME_REF"
required = true

[[rule]]
to = "victim.surname"
from = "VICTIM_SURNAME"
transform = ["trim"]

[[rule]]
to = "status"
from = "STATUS_CD"
codes = "status"

[codes.status]
map = { O = "open", C = "closed" }
"#;
    let out = with(spec).map(
        "warehouse-crime",
        &json!({ "CRIME_REF": "42/00001/26", "VICTIM_SURNAME": " Smith ", "STATUS_CD": "O", "LAST_MODIFIED": "2026-01-01" }),
    );
    assert_eq!(
        out,
        Ok(
            json!({ "crimeReference": "42/00001/26", "victim": { "surname": "Smith" }, "status": "open" })
        )
    );
}

#[test]
fn xml_sources_map_through_the_reader() {
    let spec = r#"
id = "athena-read"
version = "1.0.0"
[source]
model = "athena-crime-record@1"
format = "xml"
[target]
model = "summary@1"

[[rule]]
to = "force"
from = "Header.ForceCode"
transform = ["integer"]

[[rule]]
to = "people[]"
for_each = "People.Person[*]"
rules = [
  { to = "ref", from = "@ref" },
  { to = "roles[]", from = "Role[*]" },
]
"#;
    let m = with(spec);
    let one = r#"<CrimeRecord xmlns="urn:nmpp:athena:1"><Header><ForceCode>42</ForceCode></Header>
        <People><Person ref="p1"><Role>VIC</Role></Person></People></CrimeRecord>"#;
    let two = r#"<CrimeRecord><Header><ForceCode>42</ForceCode></Header><People>
        <Person ref="p1"><Role>VIC</Role><Role>RPT</Role></Person><Person ref="p2"><Role>WIT</Role></Person>
        </People></CrimeRecord>"#;
    let (_, v1) = xml::from_xml(one).unwrap_or_else(|e| panic!("{e}"));
    let (_, v2) = xml::from_xml(two).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        m.map("athena-read", &v1),
        Ok(json!({ "force": 42, "people": [ { "ref": "p1", "roles": ["VIC"] } ] }))
    );
    assert_eq!(
        m.map("athena-read", &v2),
        Ok(
            json!({ "force": 42, "people": [ { "ref": "p1", "roles": ["VIC", "RPT"] }, { "ref": "p2", "roles": ["WIT"] } ] })
        )
    );
}

#[test]
fn the_athena_output_reads_back_through_the_xml_reader() {
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    let sdm: Value =
        serde_json::from_str(include_str!("cases/victim-guardian/input.json")).unwrap_or_default();
    let nmpp = m.sdm_to_nmpp(&sdm).unwrap_or_else(|e| panic!("{e}"));
    let text = m
        .nmpp_to_athena_xml(&nmpp)
        .unwrap_or_else(|e| panic!("{e}"));
    let (root, tree) = xml::from_xml(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(root, "CrimeRecord");
    assert_eq!(tree["@xmlns"], "urn:nmpp:athena:1");
    assert_eq!(tree["People"]["Person"][1]["Role"], json!(["RPT", "GDN"]));
    assert_eq!(
        tree["People"]["Person"][1]["GuardianOf"],
        json!({ "@ref": "p1" })
    );
}

#[test]
fn a_schema_violation_names_the_path() {
    // A force spec targeting NMPP that writes a field the model does not have.
    let spec = r#"
id = "bad-nmpp"
version = "1.0.0"
[source]
model = "x@1"
[target]
model = "nmpp@1"

[[rule]]
to = "modelVersion"
const = "1.0.0"

[[rule]]
to = "submission.submissionId"
const = "8bf76cd6-ce3c-4862-bbf7-e8563b51cb2e"

[[rule]]
to = "submission.forceIdentifier"
const = 42

[[rule]]
to = "incident.colour"
const = "red"
"#;
    let err = with(spec).map("bad-nmpp", &json!({})).err();
    let err = err.unwrap_or_else(|| panic!("expected a schema violation"));
    assert_eq!(err.spec, "bad-nmpp@1.0.0");
    assert_eq!(err.path, "/incident");
    assert!(
        err.message.contains("breaks the NMPP v1 schema"),
        "{}",
        err.message
    );
    assert!(err.message.contains("colour"), "{}", err.message);
}

#[test]
fn unknown_spec_id_is_a_mapping_error() {
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    let err = m
        .map("nope", &json!({}))
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(err.starts_with("no mapping spec with id \"nope\""), "{err}");
    assert_eq!(m.spec_version("sdm-to-nmpp"), "sdm-to-nmpp@1.0.0");
    let ids = m.spec_ids();
    for id in [
        "nmpp-to-athena@1.0.0",
        "sdm-to-nmpp@1.0.0",
        "athena-to-nmpp-case@1.0.0",
        "warehouse-to-nmpp-case@1.0.0",
        "storm-to-nmpp-incident@1.0.0",
        "nmpp-to-ihub-event@1.0.0",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} not in {ids:?}");
    }
    assert_eq!(ids.len(), mappings::BUILTIN_SPECS.len());
    assert!(format!("{m:?}").contains("\"sdm-to-nmpp@1.0.0\""));
}

#[test]
fn documentation_of_the_builtin_specs() {
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    let doc = m.document();
    // Per-spec rows, flattened from the document root.
    assert!(
        doc.contains(
            "| `parties[].person.gender` | `included[type=person].attributes.gender` |  | GNDR |"
        ),
        "{doc}"
    );
    assert!(
        doc.contains(
            "| `People.Person[].Gender` | `parties[*].person.gender` |  | athena-gender |"
        ),
        "{doc}"
    );
    // Code tables with the list's labels.
    assert!(
        doc.contains("| `GNDR_0009` | Trans Female | \"TF\" |"),
        "{doc}"
    );
    // Lineage: SDM field → NMPP field → Athena field.
    assert!(
        doc.contains("| `included[type=person].attributes.gender` | `parties[].person.gender` | `People.Person[].Gender` |"),
        "{doc}"
    );
    // The force-adapter specs: grading table, warehouse columns, lineage through the case.
    assert!(
        doc.contains("| `grading.normalised` | `Grade` | trim | storm-grading |"),
        "{doc}"
    );
    assert!(doc.contains("### Code list `storm-grading`"), "{doc}");
    assert!(
        doc.contains("| `status` | `crime.crime_status_cd` | string | dw-status |"),
        "{doc}"
    );
    assert!(
        doc.contains(
            "## Lineage: `athena-dw-crime-rows@1` → `nmpp-case@1` → `athena-crime-record-read@1`"
        ),
        "{doc}"
    );
    assert!(
        doc.contains("| `data.attributes.eventType` | `type` |  | ihub-event-type |"),
        "{doc}"
    );
    insta::assert_snapshot!("builtin_specs_documentation", doc);
}
