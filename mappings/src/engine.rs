//! The mapping engine: the compiled form of a spec and how it runs.
//!
//! A run walks the rules of the root block once, in spec order, reading the source document
//! by borrowed references (values are cloned only when written into the target) and building
//! the target as a `serde_json::Value` tree; object keys appear in the order their first rule
//! ran, which is what gives XML targets their element order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::MappingError;
use crate::path::{Chain, Path, Root, Step, Target};
use crate::spec::SpecDef;
use crate::transform::Transform;
use crate::values;

/// How the source document is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceFormat {
    /// Plain JSON (also NMPP documents).
    Json,
    /// A JSON:API compound document: enables `->rel` and `<-rel`.
    JsonApi,
    /// XML read by [`crate::xml::from_xml`] into a value.
    Xml,
    /// One SQL row: an object of columns.
    Row,
    /// A row set: an object whose members are rows or lists of rows, named by the adapter's
    /// queries (`{"crime": {...}, "parties": [{...}]}`).
    Rows,
}

/// How the target tree is serialised by [`crate::Mappings::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetFormat {
    Json,
    Xml {
        root: String,
        namespace: Option<String>,
        indent: usize,
    },
}

/// A compiled spec.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) id: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) file: String,
    pub(crate) source_model: String,
    pub(crate) source_format: SourceFormat,
    pub(crate) target_model: String,
    pub(crate) target_format: TargetFormat,
    /// `[let]` values in dependency order.
    pub(crate) lets: Vec<(String, Path)>,
    /// Block 0 is the root (`[[rule]]`).
    pub(crate) blocks: Vec<Block>,
    pub(crate) codes: BTreeMap<String, Arc<CodeTable>>,
    /// The definition, kept for specs that extend this one.
    pub(crate) def: SpecDef,
}

impl Spec {
    pub(crate) fn name(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// A list of rules run against one item.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) rules: Vec<Rule>,
    /// How many distinct top-level keys the rules write (to size the output object once).
    pub(crate) width: usize,
}

/// Where a rule came from, for errors and documentation.
#[derive(Debug, Clone)]
pub(crate) struct RuleMeta {
    pub(crate) id: Option<String>,
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) block: String,
    pub(crate) note: Option<String>,
}

/// One compiled rule (or alternative, which has no target).
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) target: Option<Target>,
    pub(crate) kind: RuleKind,
    pub(crate) when: Option<Cond>,
    pub(crate) transforms: Vec<Transform>,
    pub(crate) codes: Option<Codes>,
    pub(crate) default: Option<Value>,
    pub(crate) required: bool,
    pub(crate) meta: RuleMeta,
}

impl Rule {
    fn label(&self) -> String {
        let to = self
            .target
            .as_ref()
            .map_or("(alternative)", |t| t.text.as_str());
        if self.meta.block == "rule" {
            format!("rule `{to}` ({}:{})", self.meta.file, self.meta.line)
        } else {
            format!(
                "rule `{to}` in block `{}` ({}:{})",
                self.meta.block, self.meta.file, self.meta.line
            )
        }
    }
}

#[derive(Debug)]
pub(crate) enum RuleKind {
    From(Path),
    Const(Value),
    First(Vec<Rule>),
    All(Vec<Rule>),
    ForEach {
        items: Path,
        block: usize,
        alias: Option<String>,
    },
    Rest {
        object: Path,
        consumed: Vec<String>,
        except: Vec<String>,
    },
}

/// A compiled condition.
#[derive(Debug)]
pub(crate) enum Cond {
    Exists(Vec<Path>),
    Absent(Vec<Path>),
    IsTrue(Path),
    OneOf(Path, Vec<Value>),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

/// What to do with a code missing from a translation table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unknown {
    Error,
    Keep,
    Omit,
    Default(Value),
}

/// A `[codes.NAME]` translation table.
#[derive(Debug)]
pub(crate) struct CodeTable {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) from_list: Option<String>,
    pub(crate) map: HashMap<String, Value>,
    /// Keys in file order (sorted), for documentation.
    pub(crate) keys: Vec<String>,
    pub(crate) unknown: Unknown,
}

/// The `codes = "..."` of a rule.
#[derive(Debug, Clone)]
pub(crate) enum Codes {
    /// Translate through a spec table.
    Table(Arc<CodeTable>),
    /// Check membership of an embedded code list (value kept).
    List(String),
}

impl Codes {
    pub(crate) fn name(&self) -> &str {
        match self {
            Codes::Table(t) => &t.name,
            Codes::List(l) => l,
        }
    }
}

/// Index of a JSON:API compound document: every entity, and every link between them, found
/// once per run so that `->rel` and `<-rel` are list walks instead of searches.
struct JsonApi<'a> {
    entities: Vec<&'a Value>,
    /// Entity addresses, sorted, with their index (the engine holds references into the
    /// document, so an entity is recognised by address without comparing ids).
    by_address: Vec<(usize, usize)>,
    /// Per entity: (reason, target entity) of its relationships, in document order.
    outbound: Vec<Vec<(&'a str, usize)>>,
    /// Per entity: (reason, source entity) of the relationships naming it.
    inbound: Vec<Vec<(&'a str, usize)>>,
}

fn key_of(v: &Value) -> Option<(&str, &str)> {
    Some((v.get("type")?.as_str()?, v.get("id")?.as_str()?))
}

fn linkages(rel: &Value) -> impl Iterator<Item = &Value> {
    let data = rel.get("data");
    let (one, many) = match data {
        Some(Value::Array(items)) => (None, Some(items.iter())),
        Some(v @ Value::Object(_)) => (Some(v), None),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

fn address(v: &Value) -> usize {
    std::ptr::from_ref(v) as usize
}

impl<'a> JsonApi<'a> {
    fn new(doc: &'a Value) -> Self {
        let mut entities: Vec<&'a Value> = Vec::new();
        if let Some(data) = doc.get("data") {
            match data {
                Value::Array(items) => entities.extend(items.iter()),
                v => entities.push(v),
            }
        }
        if let Some(Value::Array(items)) = doc.get("included") {
            entities.extend(items.iter());
        }
        let mut keys: Vec<(&'a str, &'a str, usize)> = entities
            .iter()
            .enumerate()
            .filter_map(|(i, e)| key_of(e).map(|(t, id)| (t, id, i)))
            .collect();
        keys.sort_unstable();
        let find = |kind: &str, id: &str| {
            keys.binary_search_by(|(k, i, _)| (*k, *i).cmp(&(kind, id)))
                .ok()
                .map(|pos| keys[pos].2)
        };
        let mut outbound = vec![Vec::new(); entities.len()];
        let mut inbound = vec![Vec::new(); entities.len()];
        for (from, entity) in entities.iter().enumerate() {
            if let Some(Value::Object(rels)) = entity.get("relationships") {
                for (reason, rel) in rels {
                    for link in linkages(rel) {
                        if let Some(to) = key_of(link).and_then(|(t, id)| find(t, id)) {
                            outbound[from].push((reason.as_str(), to));
                            inbound[to].push((reason.as_str(), from));
                        }
                    }
                }
            }
        }
        let mut by_address: Vec<(usize, usize)> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (address(e), i))
            .collect();
        by_address.sort_unstable();
        JsonApi {
            entities,
            by_address,
            outbound,
            inbound,
        }
    }

    /// The index of entity `v` (by address), if `v` is one of the document's entities.
    fn index_of(&self, v: &Value) -> Option<usize> {
        let a = address(v);
        self.by_address
            .binary_search_by_key(&a, |(addr, _)| *addr)
            .ok()
            .map(|pos| self.by_address[pos].1)
    }
}

/// Zero, one or more values, without allocating for the common zero-or-one case.
pub(crate) struct Few<T> {
    first: Option<T>,
    /// Values after the first; empty while `first` is `None`.
    rest: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<T> Few<T> {
    pub(crate) fn push(&mut self, v: T) {
        if self.first.is_none() {
            self.first = Some(v);
        } else {
            self.rest.push(v);
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i == 0 {
            self.first.as_ref()
        } else {
            self.rest.get(i - 1)
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.rest.iter())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.first.iter_mut().chain(self.rest.iter_mut())
    }

    fn extend(&mut self, other: Few<T>) {
        for v in other {
            self.push(v);
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let all = std::mem::take(self);
        for v in all {
            if keep(&v) {
                self.push(v);
            }
        }
    }
}

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// One produced value, with the source value it came from (to locate errors).
struct Produced<'a> {
    value: Cow<'a, Value>,
    origin: Option<&'a Value>,
}

/// The item stack of nested `for_each` rules.
#[derive(Clone, Copy)]
pub(crate) struct Frame<'a, 'f> {
    item: &'a Value,
    alias: Option<&'f str>,
    parent: Option<&'f Frame<'a, 'f>>,
}

/// One run of a spec over one document.
pub(crate) struct Run<'a> {
    spec: &'a Spec,
    doc: &'a Value,
    lets: Vec<Few<&'a Value>>,
    api: Option<JsonApi<'a>>,
}

/// Finds the JSON Pointer of `target` (by address) inside `root`.
fn pointer_of(root: &Value, target: &Value) -> Option<String> {
    fn walk(v: &Value, target: &Value, path: &mut Vec<String>) -> bool {
        if std::ptr::eq(v, target) {
            return true;
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.replace('~', "~0").replace('/', "~1"));
                    if walk(child, target, path) {
                        return true;
                    }
                    path.pop();
                }
                false
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    if walk(child, target, path) {
                        return true;
                    }
                    path.pop();
                }
                false
            }
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(root, target, &mut path).then(|| path.iter().map(|p| format!("/{p}")).collect())
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => {
            let text = other.to_string();
            if text.len() > 80 {
                let mut end = 80;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}…", &text[..end])
            } else {
                text
            }
        }
    }
}

/// Runs `spec` over `doc`.
pub(crate) fn run(spec: &Spec, doc: &Value) -> Result<Value, MappingError> {
    let api = (spec.source_format == SourceFormat::JsonApi).then(|| JsonApi::new(doc));
    let mut run = Run {
        spec,
        doc,
        lets: Vec::with_capacity(spec.lets.len()),
        api,
    };
    let top = Frame {
        item: doc,
        alias: None,
        parent: None,
    };
    for (_, path) in &spec.lets {
        let mut values = Few::default();
        run.eval(path, &top, &mut values);
        run.lets.push(values);
    }
    let mut out = Map::with_capacity(spec.blocks.first().map_or(0, |b| b.width));
    run.block(0, &top, &mut out)?;
    Ok(Value::Object(out))
}

impl<'a> Run<'a> {
    /// A mapping error for `rule`; its path is the JSON Pointer of `origin` when it can be
    /// found, else `fallback`, else the rule's source expression. Built only on failure.
    #[cold]
    fn error(
        &self,
        rule: &Rule,
        origin: Option<&Value>,
        fallback: Option<&str>,
        message: impl Into<String>,
    ) -> MappingError {
        let path = origin
            .and_then(|v| pointer_of(self.doc, v))
            .unwrap_or_else(|| fallback.map_or_else(|| Self::source_text(rule), str::to_owned));
        MappingError {
            spec: self.spec.name(),
            path,
            message: format!("{}: {}", rule.label(), message.into()),
        }
    }

    // ---- paths -------------------------------------------------------------------------

    /// Evaluates `path`: the values of the first chain that yields any.
    pub(crate) fn eval(&self, path: &Path, frame: &Frame<'a, '_>, out: &mut Few<&'a Value>) {
        for chain in &path.chains {
            let start = out.len();
            self.chain(chain, frame, out);
            if out.len() > start {
                return;
            }
        }
    }

    fn chain(&self, chain: &Chain, frame: &Frame<'a, '_>, out: &mut Few<&'a Value>) {
        match &chain.root {
            Root::Current => self.walk(frame.item, &chain.steps, out),
            Root::Doc => self.walk(self.doc, &chain.steps, out),
            Root::Let(i) => {
                if let Some(values) = self.lets.get(*i) {
                    for v in values.iter() {
                        self.walk(v, &chain.steps, out);
                    }
                }
            }
            Root::Var(name) => {
                let mut f = Some(frame);
                while let Some(cur) = f {
                    if cur.alias == Some(name.as_str()) {
                        self.walk(cur.item, &chain.steps, out);
                        return;
                    }
                    f = cur.parent;
                }
            }
            // Resolved at load; nothing to read if one slipped through.
            Root::Named(_) => {}
        }
    }

    fn walk(&self, v: &'a Value, steps: &[Step], out: &mut Few<&'a Value>) {
        let Some((step, rest)) = steps.split_first() else {
            if !values::is_absent(v) {
                out.push(v);
            }
            return;
        };
        match step {
            Step::Key(k) => {
                if let Some(child) = v.get(k.as_str()) {
                    self.walk(child, rest, out);
                }
            }
            Step::Index(i) => {
                if let Some(child) = v.as_array().and_then(|a| a.get(*i)) {
                    self.walk(child, rest, out);
                }
            }
            Step::Token(t) => {
                let child = match v {
                    Value::Object(map) => map.get(t.as_str()),
                    Value::Array(items) => t.parse::<usize>().ok().and_then(|i| items.get(i)),
                    _ => None,
                };
                if let Some(child) = child {
                    self.walk(child, rest, out);
                }
            }
            Step::Each => match v {
                Value::Array(items) => {
                    for child in items {
                        self.walk(child, rest, out);
                    }
                }
                Value::Null => {}
                _ => self.walk(v, rest, out),
            },
            Step::Filter {
                key,
                negate,
                values: wanted,
            } => {
                let keep = |item: &Value| {
                    let found = item
                        .get(key.as_str())
                        .and_then(values::scalar_text)
                        .is_some_and(|t| wanted.iter().any(|w| *w == t));
                    found != *negate
                };
                match v {
                    Value::Array(items) => {
                        for child in items {
                            if keep(child) {
                                self.walk(child, rest, out);
                            }
                        }
                    }
                    Value::Object(_) if keep(v) => self.walk(v, rest, out),
                    _ => {}
                }
            }
            Step::Out(rel) | Step::In(rel) => {
                let Some(api) = &self.api else { return };
                let Some(index) = api.index_of(v) else { return };
                let links = if matches!(step, Step::Out(_)) {
                    &api.outbound[index]
                } else {
                    &api.inbound[index]
                };
                for &(reason, other) in links {
                    if rel.as_deref().is_none_or(|want| want == reason) {
                        self.walk(api.entities[other], rest, out);
                    }
                }
            }
        }
    }

    // ---- conditions --------------------------------------------------------------------

    fn exists(&self, path: &Path, frame: &Frame<'a, '_>) -> bool {
        let mut found = Few::default();
        self.eval(path, frame, &mut found);
        !found.is_empty()
    }

    fn cond(&self, cond: &Cond, frame: &Frame<'a, '_>) -> bool {
        match cond {
            Cond::Exists(paths) => paths.iter().any(|p| self.exists(p, frame)),
            Cond::Absent(paths) => !paths.iter().any(|p| self.exists(p, frame)),
            Cond::IsTrue(path) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                found.get(0).and_then(|v| values::as_bool(v)) == Some(true)
            }
            Cond::OneOf(path, wanted) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                found.iter().any(|v| {
                    wanted.iter().any(|w| {
                        *v == w
                            || matches!((values::scalar_text(v), values::scalar_text(w)), (Some(a), Some(b)) if a == b)
                    })
                })
            }
            Cond::All(conds) => conds.iter().all(|c| self.cond(c, frame)),
            Cond::Any(conds) => conds.iter().any(|c| self.cond(c, frame)),
            Cond::Not(c) => !self.cond(c, frame),
        }
    }

    // ---- rules -------------------------------------------------------------------------

    fn block(
        &self,
        index: usize,
        frame: &Frame<'a, '_>,
        out: &mut Map<String, Value>,
    ) -> Result<(), MappingError> {
        let Some(block) = self.spec.blocks.get(index) else {
            return Ok(());
        };
        for rule in &block.rules {
            self.rule(rule, frame, out)?;
        }
        Ok(())
    }

    fn source_text(rule: &Rule) -> String {
        match &rule.kind {
            RuleKind::From(p) => p.text.clone(),
            RuleKind::ForEach { items, .. } => items.text.clone(),
            RuleKind::Rest { object, .. } => object.text.clone(),
            RuleKind::Const(_) => "(const)".into(),
            RuleKind::First(_) => "(first)".into(),
            RuleKind::All(_) => "(all)".into(),
        }
    }

    fn rule(
        &self,
        rule: &'a Rule,
        frame: &Frame<'a, '_>,
        out: &mut Map<String, Value>,
    ) -> Result<(), MappingError> {
        if let Some(when) = &rule.when
            && !self.cond(when, frame)
        {
            return Ok(());
        }
        let Some(target) = &rule.target else {
            return Ok(());
        };
        match &rule.kind {
            RuleKind::ForEach {
                items,
                block,
                alias,
            } => {
                let mut found = Few::default();
                self.eval(items, frame, &mut found);
                if found.is_empty() && rule.required {
                    return Err(self.error(
                        rule,
                        None,
                        None,
                        format!("required: nothing at `{}`", items.text),
                    ));
                }
                if !target.append && found.len() > 1 {
                    return Err(self.error(
                        rule,
                        found.get(1).copied(),
                        None,
                        format!(
                            "`{}` yields {} items but `{}` takes one (end `to` with `[]` to collect them)",
                            items.text,
                            found.len(),
                            target.text
                        ),
                    ));
                }
                for item in found {
                    let child = Frame {
                        item,
                        alias: alias.as_deref(),
                        parent: Some(frame),
                    };
                    let width = self.spec.blocks.get(*block).map_or(0, |b| b.width);
                    let mut map = Map::with_capacity(width);
                    self.block(*block, &child, &mut map)?;
                    if !map.is_empty() {
                        self.put(rule, target, Value::Object(map), out)?;
                    }
                }
                Ok(())
            }
            RuleKind::Rest {
                object,
                consumed,
                except,
            } => {
                let mut found = Few::default();
                self.eval(object, frame, &mut found);
                let mut map = Map::new();
                for obj in found.iter().filter_map(|v| v.as_object()) {
                    for (k, v) in obj {
                        if values::is_absent(v)
                            || consumed.binary_search(k).is_ok()
                            || except.iter().any(|e| e == k)
                        {
                            continue;
                        }
                        map.insert(k.clone(), v.clone());
                    }
                }
                if map.is_empty() {
                    return Ok(());
                }
                self.put(rule, target, Value::Object(map), out)
            }
            _ => {
                let mut produced = self.produce(rule, frame)?;
                if produced.is_empty()
                    && let Some(default) = &rule.default
                {
                    produced.push(Produced {
                        value: Cow::Owned(default.clone()),
                        origin: None,
                    });
                }
                if produced.is_empty() {
                    if rule.required {
                        let source = Self::source_text(rule);
                        return Err(self.error(
                            rule,
                            None,
                            None,
                            format!("required value is missing (nothing at `{source}`)"),
                        ));
                    }
                    return Ok(());
                }
                if !target.append && produced.len() > 1 {
                    return Err(self.error(
                        rule,
                        produced.get(1).and_then(|p| p.origin),
                        None,
                        format!(
                            "yields {} values but `{}` takes one (end `to` with `[]` to collect them)",
                            produced.len(),
                            target.text
                        ),
                    ));
                }
                for p in produced {
                    self.put(rule, target, p.value.into_owned(), out)?;
                }
                Ok(())
            }
        }
    }

    fn alternative(
        &self,
        alt: &'a Rule,
        frame: &Frame<'a, '_>,
    ) -> Result<Few<Produced<'a>>, MappingError> {
        match &alt.when {
            Some(when) if !self.cond(when, frame) => Ok(Few::default()),
            _ => self.produce(alt, frame),
        }
    }

    /// The values of a value rule or alternative (its `when` already holds), after its
    /// transforms and code list.
    fn produce(
        &self,
        rule: &'a Rule,
        frame: &Frame<'a, '_>,
    ) -> Result<Few<Produced<'a>>, MappingError> {
        let mut produced: Few<Produced<'a>> = match &rule.kind {
            RuleKind::From(path) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                let mut produced = Few::default();
                for v in found {
                    produced.push(Produced {
                        value: Cow::Borrowed(v),
                        origin: Some(v),
                    });
                }
                produced
            }
            RuleKind::Const(v) => {
                let mut one = Few::default();
                one.push(Produced {
                    value: Cow::Borrowed(v),
                    origin: None,
                });
                one
            }
            RuleKind::First(alts) => {
                let mut chosen = Few::default();
                for alt in alts {
                    chosen = self.alternative(alt, frame)?;
                    if !chosen.is_empty() {
                        break;
                    }
                }
                chosen
            }
            RuleKind::All(alts) => {
                let mut all = Few::default();
                for alt in alts {
                    all.extend(self.alternative(alt, frame)?);
                }
                all
            }
            RuleKind::ForEach { .. } | RuleKind::Rest { .. } => Few::default(),
        };
        if rule.transforms.is_empty() && rule.codes.is_none() {
            return Ok(produced);
        }
        let mut dropped = false;
        for p in produced.iter_mut() {
            let origin = p.origin;
            let mut value = std::mem::replace(&mut p.value, Cow::Owned(Value::Null));
            for t in &rule.transforms {
                value = t
                    .apply(value, self, frame)
                    .map_err(|m| self.error(rule, origin, None, m))?;
            }
            if !values::is_absent(&value)
                && let Some(codes) = &rule.codes
            {
                match self.translate(codes, value) {
                    Ok(Some(v)) => value = v,
                    Ok(None) => value = Cow::Owned(Value::Null),
                    Err(m) => return Err(self.error(rule, origin, None, m)),
                }
            }
            dropped |= values::is_absent(&value);
            p.value = value;
        }
        if dropped {
            produced.retain(|p| !values::is_absent(&p.value));
        }
        Ok(produced)
    }

    fn translate(
        &self,
        codes: &Codes,
        value: Cow<'a, Value>,
    ) -> Result<Option<Cow<'a, Value>>, String> {
        let Some(code) = values::scalar_text(&value) else {
            return Err(format!(
                "code list `{}` needs a code, found {}",
                codes.name(),
                value_text(&value)
            ));
        };
        match codes {
            Codes::List(list) => {
                let lists = crate::codelist::codelists();
                if lists.contains(list, &code) {
                    Ok(Some(value))
                } else {
                    let name = lists.get(list).map_or("", |l| l.name.as_str());
                    Err(format!("code {code:?} is not in code list {list} ({name})"))
                }
            }
            Codes::Table(table) => match table.map.get(code.as_ref()) {
                Some(v) => Ok(Some(Cow::Owned(v.clone()))),
                None => match &table.unknown {
                    Unknown::Error => Err(format!(
                        "code {code:?} is not in code list `{}`",
                        table.name
                    )),
                    Unknown::Keep => Ok(Some(value)),
                    Unknown::Omit => Ok(None),
                    Unknown::Default(d) => Ok(Some(Cow::Owned(d.clone()))),
                },
            },
        }
    }

    /// Writes `value` at `target` inside `out`.
    fn put(
        &self,
        rule: &Rule,
        target: &Target,
        value: Value,
        out: &mut Map<String, Value>,
    ) -> Result<(), MappingError> {
        let fail = |m: String| self.error(rule, None, Some(&target.text), m);
        let Some((last, parents)) = target.keys.split_last() else {
            return Ok(());
        };
        let mut map = out;
        for key in parents {
            if !map.contains_key(key.as_str()) {
                map.insert(key.clone(), Value::Object(Map::new()));
            }
            let Some(slot) = map.get_mut(key.as_str()) else {
                return Ok(());
            };
            map = match slot {
                Value::Object(m) => m,
                _ => {
                    return Err(fail(format!(
                        "`{key}` of `{}` is already a value, not an object",
                        target.text
                    )));
                }
            };
        }
        if target.append {
            if !map.contains_key(last.as_str()) {
                map.insert(last.clone(), Value::Array(Vec::new()));
            }
            let Some(slot) = map.get_mut(last.as_str()) else {
                return Ok(());
            };
            match slot {
                Value::Array(items) => items.push(value),
                _ => {
                    return Err(fail(format!(
                        "`{}` is already a value, not a list",
                        target.text
                    )));
                }
            }
            return Ok(());
        }
        match map.entry(last.clone()) {
            serde_json::map::Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
            serde_json::map::Entry::Occupied(mut slot) => match (slot.get_mut(), value) {
                (Value::Object(existing), Value::Object(new)) => {
                    for (k, v) in new {
                        if existing.contains_key(&k) {
                            return Err(fail(format!("`{}.{k}` is written twice", target.text)));
                        }
                        existing.insert(k, v);
                    }
                    Ok(())
                }
                _ => Err(fail(format!(
                    "`{}` is already written by an earlier rule",
                    target.text
                ))),
            },
        }
    }

    /// 1-based position of `value` among the values of `path` (for `position_in`).
    pub(crate) fn position_in(
        &self,
        path: &Path,
        frame: &Frame<'a, '_>,
        value: &Value,
    ) -> Option<usize> {
        let mut found = Few::default();
        self.eval(path, frame, &mut found);
        found.iter().position(|v| *v == value).map(|i| i + 1)
    }
}
