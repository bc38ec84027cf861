//! Constrained-value lists (code → label), loaded from the TOML files in `codelists/`.
//!
//! The files are embedded in the binary and parsed once, on first use. A list is named by its
//! four-letter SDM prefix (`GNDR`, `CPNC`, `EGRP`, `ESDD`, `IVLD`, `BWST`) or by an NMPP name
//! (`ROLE`, `OUTCOME`, `VCRIGHT`). Mapping specs refer to lists by that name (`codes = "GNDR"`)
//! and [`validate_sdm`](crate::validate_sdm) checks inbound coded values against them.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::error::SpecError;
use crate::spec::line_of;

/// The embedded code-list files: `(file name, contents)`.
const FILES: &[(&str, &str)] = &[
    (
        "codelists/gndr.toml",
        include_str!("../codelists/gndr.toml"),
    ),
    (
        "codelists/cpnc.toml",
        include_str!("../codelists/cpnc.toml"),
    ),
    (
        "codelists/egrp.toml",
        include_str!("../codelists/egrp.toml"),
    ),
    (
        "codelists/esdd.toml",
        include_str!("../codelists/esdd.toml"),
    ),
    (
        "codelists/ivld.toml",
        include_str!("../codelists/ivld.toml"),
    ),
    (
        "codelists/bwst.toml",
        include_str!("../codelists/bwst.toml"),
    ),
    (
        "codelists/role.toml",
        include_str!("../codelists/role.toml"),
    ),
    (
        "codelists/outcome.toml",
        include_str!("../codelists/outcome.toml"),
    ),
    (
        "codelists/vcright.toml",
        include_str!("../codelists/vcright.toml"),
    ),
    (
        "codelists/csts.toml",
        include_str!("../codelists/csts.toml"),
    ),
    (
        "codelists/poct.toml",
        include_str!("../codelists/poct.toml"),
    ),
    (
        "codelists/rank.toml",
        include_str!("../codelists/rank.toml"),
    ),
    (
        "codelists/grad.toml",
        include_str!("../codelists/grad.toml"),
    ),
    (
        "codelists/tlev.toml",
        include_str!("../codelists/tlev.toml"),
    ),
];

/// One constrained-value list.
#[derive(Debug, Clone)]
pub struct CodeList {
    /// List name (`GNDR`).
    pub list: String,
    /// Human name (`Gender`).
    pub name: String,
    /// Where the values come from.
    pub source: String,
    /// `(code, label)` in file order.
    pub codes: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl CodeList {
    /// The label of `code`, if it is in the list.
    pub fn label(&self, code: &str) -> Option<&str> {
        self.index.get(code).map(|&i| self.codes[i].1.as_str())
    }

    /// Whether `code` is in the list.
    pub fn contains(&self, code: &str) -> bool {
        // Short lists are scanned: cheaper than hashing the code.
        if self.codes.len() <= 16 {
            self.codes.iter().any(|(c, _)| *c == code)
        } else {
            self.index.contains_key(code)
        }
    }
}

/// Every embedded code list, by name.
#[derive(Debug, Default)]
pub struct CodeLists {
    lists: HashMap<String, CodeList>,
}

impl CodeLists {
    /// The list called `name` (`GNDR`).
    pub fn get(&self, name: &str) -> Option<&CodeList> {
        self.lists.get(name)
    }

    /// List names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.lists.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether `code` is in list `name` (false when the list does not exist).
    pub fn contains(&self, name: &str, code: &str) -> bool {
        self.lists.get(name).is_some_and(|l| l.contains(code))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    list: String,
    name: String,
    source: String,
    codes: Vec<toml::Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    code: String,
    label: String,
}

fn parse(file: &str, text: &str) -> Result<CodeList, SpecError> {
    let parsed: ListFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        SpecError::new(file, line, e.message().trim_end())
    })?;
    let mut index = HashMap::with_capacity(parsed.codes.len());
    let mut codes = Vec::with_capacity(parsed.codes.len());
    for entry in parsed.codes {
        let line = line_of(text, entry.span().start);
        let entry = entry.into_inner();
        if index.insert(entry.code.clone(), codes.len()).is_some() {
            return Err(SpecError::new(
                file,
                line,
                format!(
                    "code {:?} appears twice in list {}",
                    entry.code, parsed.list
                ),
            ));
        }
        codes.push((entry.code, entry.label));
    }
    Ok(CodeList {
        list: parsed.list,
        name: parsed.name,
        source: parsed.source,
        codes,
        index,
    })
}

fn load() -> Result<CodeLists, SpecError> {
    let mut lists = HashMap::new();
    for (file, text) in FILES {
        let list = parse(file, text)?;
        if lists.contains_key(&list.list) {
            return Err(SpecError::new(
                *file,
                1,
                format!("code list {} is defined twice", list.list),
            ));
        }
        lists.insert(list.list.clone(), list);
    }
    Ok(CodeLists { lists })
}

static LISTS: LazyLock<Result<CodeLists, SpecError>> = LazyLock::new(load);
static EMPTY: LazyLock<CodeLists> = LazyLock::new(CodeLists::default);

/// The embedded code lists.
///
/// Should an embedded file be broken (a build mistake, caught by the tests), this returns
/// empty lists, so every coded value is rejected, and [`Mappings::builtin`](crate::Mappings::builtin)
/// reports the error at start-up.
pub fn codelists() -> &'static CodeLists {
    match &*LISTS {
        Ok(lists) => lists,
        Err(_) => &EMPTY,
    }
}

/// The load error of the embedded code lists, if any.
pub(crate) fn load_error() -> Option<SpecError> {
    LISTS.as_ref().err().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lists_load_with_domain_values() {
        assert!(load_error().is_none(), "{:?}", load_error());
        let lists = codelists();
        assert_eq!(
            lists.names(),
            [
                "BWST", "CPNC", "CSTS", "EGRP", "ESDD", "GNDR", "GRAD", "IVLD", "OUTCOME", "POCT",
                "RANK", "ROLE", "TLEV", "VCRIGHT"
            ]
        );
        assert_eq!(lists.get("GNDR").map(|l| l.codes.len()), Some(10));
        assert_eq!(
            lists.get("GNDR").and_then(|l| l.label("GNDR_0003")),
            Some("Male")
        );
        assert_eq!(lists.get("OUTCOME").map(|l| l.codes.len()), Some(23));
        assert_eq!(lists.get("VCRIGHT").map(|l| l.codes.len()), Some(12));
        assert!(lists.contains("ESDD", "ESDD_W1"));
        assert!(!lists.contains("ESDD", "W1"));
        assert!(!lists.contains("NOPE", "x"));
    }

    #[test]
    fn duplicate_code_names_its_line() {
        let text = "list = \"X\"\nname = \"x\"\nsource = \"t\"\ncodes = [\n { code = \"A\", label = \"a\" },\n { code = \"A\", label = \"b\" },\n]\n";
        let err = parse("x.toml", text).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("x.toml:6: code \"A\" appears twice in list X")
        );
    }
}
