//! Spec loading: every mistake is a `SpecError` naming the file and line.

use mappings::{Mappings, SpecError};

/// Loads `text` as `force/test.toml` over the built-in specs.
fn load(text: &str) -> Result<Mappings, SpecError> {
    Mappings::from_sources([("force/test.toml", text)])
}

fn error(text: &str) -> String {
    match load(text) {
        Ok(m) => panic!("expected a SpecError, loaded {m:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = r#"id = "t"
version = "1.0.0"
[source]
model = "test@1"
[target]
model = "out@1"
"#;

/// `HEAD` (6 lines) plus `body`: line 7 is the first line of `body`.
fn spec(body: &str) -> String {
    format!("{HEAD}{body}")
}

fn assert_error(body: &str, line: usize, needle: &str) {
    let e = error(&spec(body));
    assert!(
        e.starts_with(&format!("force/test.toml:{line}: ")),
        "expected line {line} in: {e}"
    );
    assert!(e.contains(needle), "expected {needle:?} in: {e}");
}

#[test]
fn a_minimal_spec_loads() {
    let m = load(&spec("[[rule]]\nto = \"a\"\nfrom = \"x\"\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.spec_version("t"), "t@1.0.0");
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@1.0.0");
    assert_eq!(m.spec_version("nope"), "nope@unknown");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    assert_error("[[rule]]\nto = \"a\nfrom = \"x\"\n", 8, "");
}

#[test]
fn unknown_keys_are_rejected() {
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\ncolour = 1\n",
        10,
        "unknown field `colour`",
    );
    let e = error("id = \"t\"\nversion = \"1.0.0\"\nauthor = \"me\"\n");
    assert!(e.starts_with("force/test.toml:3: "), "{e}");
}

#[test]
fn bad_paths_are_rejected() {
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x..y\"\n",
        9,
        "bad path \"x..y\" at column 3",
    );
    assert_error(
        "[[rule]]\nto = \"a[].b\"\nfrom = \"x\"\n",
        8,
        "bad target path",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"$nobody.x\"\n",
        9,
        "unknown variable $nobody",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"data->victim\"\n",
        9,
        "need [source] format = \"jsonapi\"",
    );
}

#[test]
fn unknown_transforms_and_code_lists_are_rejected() {
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\ntransform = [\"trim\", \"shout\"]\n",
        10,
        "unknown transform \"shout\"",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\ntransform = [{ format = \"no placeholder\" }]\n",
        10,
        "exactly one `{}`",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\ncodes = \"GENDER\"\n",
        10,
        "unknown code list \"GENDER\"",
    );
}

#[test]
fn rules_need_one_source_and_a_target() {
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\nconst = 1\n",
        7,
        "exactly one of",
    );
    assert_error("[[rule]]\nfrom = \"x\"\n", 7, "a rule needs `to`");
    assert_error(
        "[[rule]]\nto = \"a\"\nfirst = [{ to = \"b\", from = \"x\" }]\n",
        9,
        "an alternative inside `first`/`all` has no `to`",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\nas = \"y\"\n",
        7,
        "go with `for_each`",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfor_each = \"x[*]\"\n",
        7,
        "`for_each` needs",
    );
}

#[test]
fn blocks_must_exist_and_be_used() {
    assert_error(
        "[[rule]]\nto = \"a\"\nfor_each = \"x\"\nuse = \"nope\"\n",
        10,
        "unknown block \"nope\"",
    );
    assert_error(
        "[[rule]]\nto = \"a\"\nfrom = \"x\"\n\n[[block.spare]]\nto = \"b\"\nfrom = \"y\"\n",
        11,
        "block \"spare\" is never used",
    );
    // A block using an item name that one of its users does not define.
    assert_error(
        "[[rule]]\nto = \"a[]\"\nfor_each = \"xs[*]\"\nas = \"x\"\nrules = [{ to = \"b[]\", for_each = \"ys[*]\", use = \"inner\" }]\n\n[[rule]]\nto = \"c\"\nfor_each = \"z\"\nuse = \"inner\"\n\n[[block.inner]]\nto = \"v\"\nfrom = \"$x.v\"\n",
        16,
        "block \"inner\" uses $x",
    );
}

#[test]
fn code_tables_are_checked_against_their_lists() {
    assert_error(
        "[codes.g]\nfrom_list = \"GNDR\"\nmap = { GNDR_0001 = \"F\", GNDR_0100 = \"?\" }\n",
        7,
        "\"GNDR_0100\" is not a code of list GNDR",
    );
    assert_error(
        "[codes.g]\nfrom_list = \"GNDR\"\ncomplete = true\nmap = { GNDR_0001 = \"F\" }\n",
        7,
        "misses GNDR_0002",
    );
    assert_error(
        "[codes.g]\nfrom_list = \"GENDER\"\nmap = {}\n",
        8,
        "unknown code list \"GENDER\"",
    );
    assert_error(
        "[codes.g]\nunknown = \"shrug\"\nmap = {}\n",
        8,
        "use error, keep, omit or default",
    );
}

#[test]
fn lets_must_not_form_a_cycle() {
    assert_error("[let]\na = \"$b.x\"\nb = \"$a.y\"\n", 8, "cycle");
}

#[test]
fn header_fields_are_checked() {
    let e =
        error("id = \"t\"\nversion = \"1.0\"\n[source]\nmodel = \"m\"\n[target]\nmodel = \"o\"\n");
    assert!(
        e.starts_with("force/test.toml:2: version must be a semantic version"),
        "{e}"
    );
    let e = error(
        "id = \"t\"\nversion = \"1.0.0\"\n[source]\nmodel = \"m\"\nformat = \"csv\"\n[target]\nmodel = \"o\"\n",
    );
    assert!(
        e.starts_with("force/test.toml:5: unknown source format \"csv\""),
        "{e}"
    );
    let e = error(
        "id = \"t\"\nversion = \"1.0.0\"\n[source]\nmodel = \"m\"\n[target]\nmodel = \"o\"\nformat = \"xml\"\n",
    );
    assert!(e.contains("an xml target needs `root`"), "{e}");
}

#[test]
fn overrides_are_checked() {
    let e = error("id = \"x\"\nversion = \"1.0.0\"\nextends = \"nowhere\"\n");
    assert!(
        e.starts_with("force/test.toml:3: extends \"nowhere\", which is not loaded"),
        "{e}"
    );
    let e = error(
        "id = \"nmpp-to-athena\"\nversion = \"1.0.1\"\nextends = \"nmpp-to-athena\"\n\n[[rule]]\nto = \"X\"\nconst = 1\n",
    );
    assert!(
        e.starts_with("force/test.toml:5: a rule in a spec that extends another needs an `id`"),
        "{e}"
    );
    let e = error(
        "id = \"nmpp-to-athena\"\nversion = \"1.0.1\"\nextends = \"nmpp-to-athena\"\n\n[[rule]]\nid = \"person.shoe\"\nto = \"X\"\nconst = 1\n",
    );
    assert!(
        e.starts_with("force/test.toml:5: no rule with id \"person.shoe\""),
        "{e}"
    );
    // An override that breaks the merged spec is reported in the override's file.
    let e = error(
        "id = \"nmpp-to-athena\"\nversion = \"1.0.1\"\nextends = \"nmpp-to-athena\"\n\n[codes.athena-gender]\nmap = { GNDR_0042 = \"Q\" }\n",
    );
    assert!(
        e.starts_with(
            "force/test.toml:5: codes.athena-gender: \"GNDR_0042\" is not a code of list GNDR"
        ),
        "{e}"
    );
}

#[test]
fn load_dir_reads_a_forces_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let override_text = "id = \"nmpp-to-athena\"\nversion = \"2.0.0\"\nextends = \"nmpp-to-athena\"\n\n[codes.athena-role]\nmap = { victim = \"V\" }\n";
    std::fs::write(dir.path().join("10-athena.toml"), override_text)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("README.md"), "not a spec").unwrap_or_else(|e| panic!("{e}"));
    let m = Mappings::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@2.0.0");

    let bad = dir.path().join("20-bad.toml");
    std::fs::write(&bad, "id = \"b\"\nversion = \"1.0.0\"\nwhat = 1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let e = Mappings::load_dir(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with(&format!("{}:3: unknown field `what`", bad.display())),
        "{e}"
    );

    let e = Mappings::load_dir(dir.path().join("missing"))
        .err()
        .map(|e| (e.line, e.message));
    assert!(
        matches!(e, Some((0, ref m)) if m.starts_with("cannot read directory")),
        "{e:?}"
    );
}

#[test]
fn the_examples_in_spec_format_md_are_valid() {
    let doc = include_str!("../SPEC-FORMAT.md");
    let mut specs = 0;
    for (n, block) in doc.split("```toml").skip(1).enumerate() {
        let body = block.split("```").next().unwrap_or_default();
        let table: Result<toml::Table, _> = toml::from_str(body);
        assert!(
            table.is_ok(),
            "SPEC-FORMAT.md toml example {}: {table:?}\n{body}",
            n + 1
        );
        if body.lines().any(|l| l.starts_with("version = ")) {
            specs += 1;
            let loaded = Mappings::from_sources([("SPEC-FORMAT.md", body)]);
            assert!(
                loaded.is_ok(),
                "example {} does not load: {:?}",
                n + 1,
                loaded.err()
            );
        }
    }
    assert!(specs >= 2, "expected whole specs among the examples");
}

/// An NMPP document with one location postcode, enough for `nmpp-to-athena`.
fn nmpp_with_postcode(postcode: &str) -> serde_json::Value {
    serde_json::json!({
        "submission": { "forceIdentifier": 42, "submissionId": "s-1" },
        "incident": { "location": { "postcode": postcode } },
        "parties": []
    })
}

#[test]
fn versions_of_a_spec_load_side_by_side_and_the_oldest_built_in_one_is_current() {
    let m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        m.versions("nmpp-to-athena"),
        ["nmpp-to-athena@1.0.0", "nmpp-to-athena@2.0.0"]
    );
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@1.0.0");
    assert_eq!(
        m.spec_version("nmpp-to-athena@2.0.0"),
        "nmpp-to-athena@2.0.0"
    );
    let doc = nmpp_with_postcode(" mk40 1aa");
    let v1 = m
        .render("nmpp-to-athena", &doc)
        .unwrap_or_else(|e| panic!("{e}"));
    let v2 = m
        .render("nmpp-to-athena@2.0.0", &doc)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(v1.contains("<Postcode> mk40 1aa</Postcode>"), "{v1}");
    assert!(v2.contains("<Postcode>MK40 1AA</Postcode>"), "{v2}");
    // Nothing else differs: 2.0.0 extends 1.0.0 and replaces one rule.
    assert_eq!(v1.replace(" mk40 1aa", "MK40 1AA"), v2);

    assert_eq!(
        m.resolve("nmpp-to-athena").as_deref(),
        Ok("nmpp-to-athena@1.0.0")
    );
    let e = m
        .resolve("nmpp-to-athena@3.0.0")
        .err()
        .unwrap_or_else(|| panic!("3.0.0 is not loaded"));
    assert_eq!(
        e.available,
        ["nmpp-to-athena@1.0.0", "nmpp-to-athena@2.0.0"]
    );
    assert!(
        e.to_string()
            .contains("(loaded: nmpp-to-athena@1.0.0, nmpp-to-athena@2.0.0)"),
        "{e}"
    );
    let err = m
        .map("nmpp-to-athena@3.0.0", &doc)
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(err.contains("no mapping spec"), "{err}");
}

#[test]
fn pinning_chooses_the_current_version() {
    let mut m = Mappings::builtin().unwrap_or_else(|e| panic!("{e}"));
    m.pin("nmpp-to-athena", "2.0.0")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@2.0.0");
    let out = m
        .nmpp_to_athena_xml(&nmpp_with_postcode("mk40 1aa"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("<Postcode>MK40 1AA</Postcode>"), "{out}");
    let e = m
        .pin("nmpp-to-athena", "2.1.0")
        .err()
        .unwrap_or_else(|| panic!("2.1.0 is not loaded"));
    assert_eq!(e.requested, "nmpp-to-athena@2.1.0");
    assert_eq!(
        e.available,
        ["nmpp-to-athena@1.0.0", "nmpp-to-athena@2.0.0"]
    );
    assert!(m.pin("nope", "1.0.0").is_err());
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@2.0.0");
}

#[test]
fn a_forces_new_version_becomes_current_and_can_extend_a_given_version() {
    // Extends 2.0.0 explicitly (the current built-in is 1.0.0) and changes one more thing.
    let m = load(
        "id = \"nmpp-to-athena\"\nversion = \"2.1.0\"\nextends = \"nmpp-to-athena@2.0.0\"\n\n\
         [codes.athena-role]\nmap = { victim = \"V\" }\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.spec_version("nmpp-to-athena"), "nmpp-to-athena@2.1.0");
    assert_eq!(m.versions("nmpp-to-athena").len(), 3);
    let out = m
        .nmpp_to_athena_xml(&nmpp_with_postcode("mk40 1aa"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("<Postcode>MK40 1AA</Postcode>"), "{out}");
    let e = error("id = \"x\"\nversion = \"1.0.0\"\nextends = \"nmpp-to-athena@7.0.0\"\n");
    assert!(
        e.starts_with("force/test.toml:3: extends \"nmpp-to-athena@7.0.0\", which is not loaded"),
        "{e}"
    );
}
