//! Mapping spec files: their TOML shape (`*Def`, straight from serde with
//! `deny_unknown_fields`), the source text they came from (for `file:line` errors), and
//! `extends` (a force's file overriding parts of a base spec). [`compile`] turns a definition
//! into the form the engine runs. The format is documented in `SPEC-FORMAT.md`.

pub(crate) mod compile;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::error::SpecError;

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A spec file's name and text, shared by every definition parsed from it.
#[derive(Debug)]
pub(crate) struct SourceText {
    pub(crate) name: String,
    pub(crate) text: String,
}

impl SourceText {
    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        line_of(&self.text, span.start)
    }
}

/// Where a definition came from: set after parsing, kept through `extends` merges.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin(pub(crate) Option<Arc<SourceText>>);

impl Origin {
    pub(crate) fn file(&self) -> &str {
        self.0.as_ref().map_or("<unknown>", |s| s.name.as_str())
    }

    pub(crate) fn line(&self, span: &Range<usize>) -> usize {
        self.0.as_ref().map_or(0, |s| s.line(span))
    }

    pub(crate) fn error(&self, span: &Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError::new(self.file(), self.line(span), message)
    }
}

/// A whole spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpecDef {
    pub(crate) id: Spanned<String>,
    pub(crate) version: Spanned<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) extends: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) source: Option<Spanned<SourceDef>>,
    #[serde(default)]
    pub(crate) target: Option<Spanned<TargetDef>>,
    #[serde(default, rename = "let")]
    pub(crate) lets: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(crate) codes: BTreeMap<String, Spanned<CodesDef>>,
    #[serde(default)]
    pub(crate) rule: Vec<Spanned<RuleDef>>,
    #[serde(default)]
    pub(crate) block: BTreeMap<String, Vec<Spanned<RuleDef>>>,
    #[serde(skip)]
    pub(crate) origin: Origin,
    /// Origin of each `let`, by name (lets are plain strings in the file).
    #[serde(skip)]
    pub(crate) let_origins: BTreeMap<String, Origin>,
}

/// `[source]`: what the spec reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceDef {
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) format: Option<Spanned<String>>,
}

/// `[target]`: what the spec writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetDef {
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) format: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) root: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) indent: Option<usize>,
}

/// `[codes.NAME]`: a code translation table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodesDef {
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) from_list: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) complete: Option<bool>,
    #[serde(default)]
    pub(crate) unknown: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) default: Option<toml::Value>,
    #[serde(default)]
    pub(crate) map: BTreeMap<String, toml::Value>,
    #[serde(skip)]
    pub(crate) origin: Origin,
}

/// One entry of `transform = [...]`: a name, or a one-key table with an argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum TransformDef {
    Name(String),
    WithArg(BTreeMap<String, toml::Value>),
}

/// `when = {...}`: a condition. Exactly one of the keys (with `path` for `equals`/`one_of`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CondDef {
    #[serde(default)]
    pub(crate) exists: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) absent: Option<OneOrMany>,
    #[serde(default)]
    pub(crate) is_true: Option<String>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) equals: Option<toml::Value>,
    #[serde(default)]
    pub(crate) one_of: Option<Vec<toml::Value>>,
    #[serde(default)]
    pub(crate) all: Option<Vec<CondDef>>,
    #[serde(default)]
    pub(crate) any: Option<Vec<CondDef>>,
    #[serde(default)]
    pub(crate) not: Option<Box<CondDef>>,
}

/// A path or a list of paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A rule (`[[rule]]`, `[[block.NAME]]`, an entry of `rules`, or an alternative of
/// `first`/`all`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleDef {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) to: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) from: Option<Spanned<String>>,
    #[serde(default, rename = "const")]
    pub(crate) constant: Option<toml::Value>,
    #[serde(default)]
    pub(crate) first: Option<Vec<Spanned<RuleDef>>>,
    #[serde(default)]
    pub(crate) all: Option<Vec<Spanned<RuleDef>>>,
    #[serde(default)]
    pub(crate) for_each: Option<Spanned<String>>,
    #[serde(default, rename = "as")]
    pub(crate) alias: Option<Spanned<String>>,
    #[serde(default, rename = "use")]
    pub(crate) use_block: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) rules: Option<Vec<Spanned<RuleDef>>>,
    #[serde(default)]
    pub(crate) rest: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) except: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) when: Option<Spanned<CondDef>>,
    #[serde(default)]
    pub(crate) transform: Option<Spanned<Vec<TransformDef>>>,
    #[serde(default)]
    pub(crate) codes: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) default: Option<toml::Value>,
    #[serde(default)]
    pub(crate) required: Option<bool>,
    #[serde(default)]
    pub(crate) note: Option<String>,
    #[serde(skip)]
    pub(crate) origin: Origin,
}

impl RuleDef {
    fn children_mut(&mut self) -> impl Iterator<Item = &mut Spanned<RuleDef>> {
        self.first
            .iter_mut()
            .chain(self.all.iter_mut())
            .chain(self.rules.iter_mut())
            .flatten()
    }
}

fn set_origin(rule: &mut RuleDef, origin: &Origin) {
    rule.origin = origin.clone();
    for child in rule.children_mut() {
        set_origin(child.get_mut(), origin);
    }
}

/// Parses one spec file.
pub(crate) fn parse(name: &str, text: &str) -> Result<SpecDef, SpecError> {
    let mut def: SpecDef = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(text, s.start));
        SpecError::new(name, line, e.message().trim_end())
    })?;
    let origin = Origin(Some(Arc::new(SourceText {
        name: name.to_owned(),
        text: text.to_owned(),
    })));
    def.origin = origin.clone();
    for rule in &mut def.rule {
        set_origin(rule.get_mut(), &origin);
    }
    for rules in def.block.values_mut() {
        for rule in rules {
            set_origin(rule.get_mut(), &origin);
        }
    }
    for codes in def.codes.values_mut() {
        codes.get_mut().origin = origin.clone();
    }
    def.let_origins = def
        .lets
        .keys()
        .map(|k| (k.clone(), origin.clone()))
        .collect();
    Ok(def)
}

/// Replaces the rule with `id` somewhere in `rules` (recursively); returns whether it did.
fn replace_rule(rules: &mut [Spanned<RuleDef>], id: &str, new: &Spanned<RuleDef>) -> bool {
    for rule in rules.iter_mut() {
        if rule.get_ref().id.as_deref() == Some(id) {
            *rule = new.clone();
            return true;
        }
        if let Some(children) = rule.get_mut().rules.as_mut()
            && replace_rule(children, id, new)
        {
            return true;
        }
    }
    false
}

/// `over` extends `base`: returns the merged definition.
///
/// - `id`, `version`, `description`, `extends` come from `over`; `source`/`target` too when
///   given;
/// - `[let]` entries replace the base's by name;
/// - `[codes.NAME]` tables merge: `map` entries are added or replace the base's, the other
///   keys replace the base's when given;
/// - `[[block.NAME]]` replaces the whole block (or adds a new one);
/// - every `[[rule]]` must have an `id` and replaces the base rule with that `id`, wherever it
///   is (top level, a block, nested `rules`).
pub(crate) fn merge(base: &SpecDef, over: SpecDef) -> Result<SpecDef, SpecError> {
    let mut out = base.clone();
    out.id = over.id;
    out.version = over.version;
    out.extends = over.extends;
    out.origin = over.origin.clone();
    if over.description.is_some() {
        out.description = over.description;
    }
    if over.source.is_some() {
        out.source = over.source;
    }
    if over.target.is_some() {
        out.target = over.target;
    }
    for (name, expr) in over.lets {
        out.let_origins.insert(name.clone(), over.origin.clone());
        out.lets.insert(name, expr);
    }
    for (name, codes) in over.codes {
        match out.codes.get_mut(&name) {
            Some(existing) => {
                let span = codes.span();
                let codes = codes.into_inner();
                let target = existing.get_mut();
                target.map.extend(codes.map);
                if codes.description.is_some() {
                    target.description = codes.description;
                }
                if codes.from_list.is_some() {
                    target.from_list = codes.from_list;
                }
                if codes.complete.is_some() {
                    target.complete = codes.complete;
                }
                if codes.unknown.is_some() {
                    target.unknown = codes.unknown;
                }
                if codes.default.is_some() {
                    target.default = codes.default;
                }
                target.origin = codes.origin;
                *existing = Spanned::new(span, existing.get_ref().clone());
            }
            None => {
                out.codes.insert(name, codes);
            }
        }
    }
    for (name, rules) in over.block {
        out.block.insert(name, rules);
    }
    for rule in over.rule {
        let Some(id) = rule.get_ref().id.clone() else {
            return Err(over.origin.error(
                &rule.span(),
                "a rule in a spec that extends another needs an `id`: the id of the base rule it replaces",
            ));
        };
        let mut done = replace_rule(&mut out.rule, &id, &rule);
        for rules in out.block.values_mut() {
            done = done || replace_rule(rules, &id, &rule);
        }
        if !done {
            return Err(over.origin.error(
                &rule.span(),
                format!(
                    "no rule with id {id:?} in base spec {:?}",
                    base.id.get_ref()
                ),
            ));
        }
    }
    Ok(out)
}
