//! Turns a [`SpecDef`] into an engine [`Spec`], checking everything that can be checked before
//! a document arrives: paths parse, variables are defined where they are used, relationship
//! steps only in JSON:API specs, transforms and code lists exist, code tables are consistent
//! with the lists they translate, blocks exist and are used. Every error names `file:line`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;
use toml::Spanned;

use super::{CondDef, Origin, RuleDef, SpecDef, TransformDef};
use crate::codelist::codelists;
use crate::engine::{
    Block, CodeTable, Codes, Cond, Rule, RuleKind, RuleMeta, SourceFormat, Spec, TargetFormat,
    Unknown,
};
use crate::error::SpecError;
use crate::path::{self, Path, Root, Step};
use crate::transform::{self, Transform};

/// TOML value → JSON value (dates become their text).
pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Names visible to the rules of one block.
#[derive(Default)]
struct Scope {
    /// `as` names of enclosing `for_each` items (outermost first), excluding the current one.
    outer: Vec<String>,
    /// `as` name of the current item.
    current: Option<String>,
    /// Outer names the block's rules use (so other uses of the block can be checked).
    free: BTreeSet<String>,
}

struct BlockInfo {
    alias: Option<String>,
    free: BTreeSet<String>,
}

struct Compiler<'d> {
    def: &'d SpecDef,
    jsonapi: bool,
    lets: Vec<String>,
    codes: BTreeMap<String, Arc<CodeTable>>,
    blocks: Vec<Block>,
    block_ids: HashMap<String, usize>,
    block_info: HashMap<usize, BlockInfo>,
    /// Blocks whose rules were copied into an inline block (`use` with `rules`).
    used: BTreeSet<String>,
}

/// Compiles a (merged) spec definition.
pub(crate) fn compile(def: SpecDef) -> Result<Spec, SpecError> {
    let top = &def.origin;
    let id = def.id.get_ref().clone();
    if !is_name(&id) {
        return Err(top.error(
            &def.id.span(),
            "id must be letters, digits, `-` or `_` (e.g. \"nmpp-to-athena\")",
        ));
    }
    let version = def.version.get_ref().clone();
    if !is_semver(&version) {
        return Err(top.error(
            &def.version.span(),
            "version must be a semantic version MAJOR.MINOR.PATCH (e.g. \"1.0.0\")",
        ));
    }
    let Some(source) = &def.source else {
        return Err(top.error(&def.id.span(), "missing [source] (model and format)"));
    };
    let Some(target) = &def.target else {
        return Err(top.error(&def.id.span(), "missing [target] (model and format)"));
    };
    let source_format = match source
        .get_ref()
        .format
        .as_ref()
        .map(|f| (f.get_ref().as_str(), f.span()))
    {
        None | Some(("json", _)) => SourceFormat::Json,
        Some(("jsonapi", _)) => SourceFormat::JsonApi,
        Some(("xml", _)) => SourceFormat::Xml,
        Some(("row", _)) => SourceFormat::Row,
        Some(("rows", _)) => SourceFormat::Rows,
        Some((other, span)) => {
            return Err(top.error(
                &span,
                format!("unknown source format {other:?}: use json, jsonapi, xml, row or rows"),
            ));
        }
    };
    let t = target.get_ref();
    let target_format = match t.format.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
        None | Some(("json", _)) => TargetFormat::Json,
        Some(("xml", span)) => {
            let Some(root) = t.root.clone() else {
                return Err(top.error(&span, "an xml target needs `root`: the root element name"));
            };
            TargetFormat::Xml {
                root,
                namespace: t.namespace.clone(),
                indent: t.indent.unwrap_or(0),
            }
        }
        Some((other, span)) => {
            return Err(top.error(
                &span,
                format!("unknown target format {other:?}: use json or xml"),
            ));
        }
    };

    let mut c = Compiler {
        def: &def,
        jsonapi: source_format == SourceFormat::JsonApi,
        lets: Vec::new(),
        codes: BTreeMap::new(),
        blocks: vec![Block {
            rules: Vec::new(),
            width: 0,
        }],
        block_ids: HashMap::new(),
        block_info: HashMap::new(),
        used: BTreeSet::new(),
    };
    c.compile_codes()?;
    let lets = c.compile_lets()?;
    let mut scope = Scope::default();
    let root = c.rules(&def.rule, "rule", &mut scope)?;
    c.blocks[0].width = width(&root);
    c.blocks[0].rules = root;
    for (name, rules) in &def.block {
        if !c.block_ids.contains_key(name) && !c.used.contains(name) {
            let (origin, span) = rules.first().map_or((&def.origin, def.id.span()), |r| {
                (&r.get_ref().origin, r.span())
            });
            return Err(origin.error(&span, format!("block {name:?} is never used")));
        }
    }
    let Compiler { blocks, codes, .. } = c;
    Ok(Spec {
        id,
        version,
        description: def.description.clone().unwrap_or_default(),
        file: def.origin.file().to_owned(),
        source_model: source.get_ref().model.clone(),
        source_format,
        target_model: t.model.clone(),
        target_format,
        lets,
        blocks,
        codes,
        def,
    })
}

impl Compiler<'_> {
    fn compile_codes(&mut self) -> Result<(), SpecError> {
        for (name, spanned) in &self.def.codes {
            let cd = spanned.get_ref();
            let o = &cd.origin;
            let span = spanned.span();
            let list = match &cd.from_list {
                None => None,
                Some(l) => Some(codelists().get(l.get_ref()).ok_or_else(|| {
                    o.error(
                        &l.span(),
                        format!(
                            "unknown code list {:?} (known: {})",
                            l.get_ref(),
                            codelists().names().join(", ")
                        ),
                    )
                })?),
            };
            let mut map = HashMap::with_capacity(cd.map.len());
            for (code, value) in &cd.map {
                if let Some(list) = list
                    && !list.contains(code)
                {
                    return Err(o.error(
                        &span,
                        format!(
                            "codes.{name}: {code:?} is not a code of list {} ({})",
                            list.list, list.name
                        ),
                    ));
                }
                map.insert(code.clone(), toml_to_json(value));
            }
            if cd.complete == Some(true) {
                let Some(list) = list else {
                    return Err(
                        o.error(&span, format!("codes.{name}: `complete` needs `from_list`"))
                    );
                };
                let missing: Vec<&str> = list
                    .codes
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .filter(|c| !map.contains_key(*c))
                    .collect();
                if !missing.is_empty() {
                    return Err(o.error(
                        &span,
                        format!(
                            "codes.{name} must translate every code of {} but misses {}",
                            list.list,
                            missing.join(", ")
                        ),
                    ));
                }
            }
            let default = cd.default.as_ref().map(toml_to_json);
            let unknown = match (
                cd.unknown
                    .as_ref()
                    .map(|u| (u.get_ref().as_str(), u.span())),
                default,
            ) {
                (None, None) | (Some(("error", _)), None) => Unknown::Error,
                (Some(("keep", _)), None) => Unknown::Keep,
                (Some(("omit", _)), None) => Unknown::Omit,
                (None | Some(("default", _)), Some(d)) => Unknown::Default(d),
                (Some(("default", s)), None) => {
                    return Err(o.error(
                        &s,
                        format!("codes.{name}: unknown = \"default\" needs `default`"),
                    ));
                }
                (Some((_, s)), Some(_)) => {
                    return Err(o.error(
                        &s,
                        format!("codes.{name}: `default` goes with unknown = \"default\""),
                    ));
                }
                (Some((other, s)), None) => {
                    return Err(o.error(
                        &s,
                        format!(
                            "codes.{name}: unknown = {other:?}; use error, keep, omit or default"
                        ),
                    ));
                }
            };
            let mut keys: Vec<String> = cd.map.keys().cloned().collect();
            if let Some(list) = list {
                // Document in the list's order.
                keys.sort_by_key(|k| list.codes.iter().position(|(c, _)| c == k));
            }
            self.codes.insert(
                name.clone(),
                Arc::new(CodeTable {
                    name: name.clone(),
                    description: cd.description.clone(),
                    from_list: list.map(|l| l.list.clone()),
                    map,
                    keys,
                    unknown,
                }),
            );
        }
        Ok(())
    }

    fn let_origin(&self, name: &str) -> &Origin {
        self.def.let_origins.get(name).unwrap_or(&self.def.origin)
    }

    /// Lets in dependency order; each may use the lets before it.
    fn compile_lets(&mut self) -> Result<Vec<(String, Path)>, SpecError> {
        let mut parsed: BTreeMap<&str, (Path, &Spanned<String>)> = BTreeMap::new();
        for (name, expr) in &self.def.lets {
            let o = self.let_origin(name);
            if !is_name(name) || name == "doc" || name == "item" {
                return Err(o.error(
                    &expr.span(),
                    format!("let name {name:?}: use letters, digits, `_` or `-`, not doc or item"),
                ));
            }
            let path = path::parse(expr.get_ref()).map_err(|m| o.error(&expr.span(), m))?;
            parsed.insert(name, (path, expr));
        }
        let mut order: Vec<&str> = Vec::new();
        let mut visiting: Vec<&str> = Vec::new();
        fn visit<'n>(
            name: &'n str,
            parsed: &BTreeMap<&'n str, (Path, &Spanned<String>)>,
            order: &mut Vec<&'n str>,
            visiting: &mut Vec<&'n str>,
        ) -> Result<(), String> {
            if order.contains(&name) {
                return Ok(());
            }
            if visiting.contains(&name) {
                return Err(format!(
                    "lets refer to each other in a cycle: {} → {name}",
                    visiting.join(" → ")
                ));
            }
            visiting.push(name);
            if let Some((path, _)) = parsed.get(name) {
                for chain in &path.chains {
                    if let Root::Named(dep) = &chain.root
                        && let Some((&key, _)) = parsed.get_key_value(dep.as_str())
                    {
                        visit(key, parsed, order, visiting)?;
                    }
                }
            }
            visiting.pop();
            order.push(name);
            Ok(())
        }
        for &name in parsed.keys() {
            visit(name, &parsed, &mut order, &mut visiting).map_err(|m| {
                let (_, expr) = &parsed[name];
                self.let_origin(name).error(&expr.span(), m)
            })?;
        }
        let mut lets = Vec::new();
        for name in order {
            let (mut path, expr) = parsed.remove(name).ok_or_else(|| {
                self.def
                    .origin
                    .error(&self.def.id.span(), format!("let {name} vanished"))
            })?;
            let mut scope = Scope::default();
            self.resolve(&mut path, &mut scope).map_err(|m| {
                self.let_origin(name)
                    .error(&expr.span(), format!("let {name}: {m}"))
            })?;
            self.lets.push(name.to_owned());
            lets.push((name.to_owned(), path));
        }
        Ok(lets)
    }

    /// Resolves `$name` roots against the scope and the lets; checks relationship steps.
    fn resolve(&self, path: &mut Path, scope: &mut Scope) -> Result<(), String> {
        for chain in &mut path.chains {
            if let Root::Named(name) = &chain.root {
                let name = name.clone();
                chain.root = if name == "doc" {
                    Root::Doc
                } else if name == "item" || scope.current.as_deref() == Some(name.as_str()) {
                    Root::Current
                } else if scope.outer.contains(&name) {
                    scope.free.insert(name.clone());
                    Root::Var(name)
                } else if let Some(i) = self.lets.iter().position(|l| *l == name) {
                    Root::Let(i)
                } else {
                    let mut known = vec!["$doc".to_owned(), "$item".to_owned()];
                    known.extend(
                        scope
                            .outer
                            .iter()
                            .chain(scope.current.iter())
                            .map(|n| format!("${n}")),
                    );
                    known.extend(self.lets.iter().map(|n| format!("${n}")));
                    return Err(format!(
                        "unknown variable ${name} in `{}` (known here: {})",
                        path.text,
                        known.join(", ")
                    ));
                };
            }
            if !self.jsonapi && chain.uses_links() {
                return Err(format!(
                    "`->` and `<-` in `{}` follow JSON:API relationships: they need [source] format = \"jsonapi\"",
                    path.text
                ));
            }
        }
        Ok(())
    }

    fn path(
        &self,
        text: &Spanned<String>,
        origin: &Origin,
        scope: &mut Scope,
    ) -> Result<Path, SpecError> {
        let mut path = path::parse(text.get_ref()).map_err(|m| origin.error(&text.span(), m))?;
        self.resolve(&mut path, scope)
            .map_err(|m| origin.error(&text.span(), m))?;
        Ok(path)
    }

    fn rules(
        &mut self,
        rules: &[Spanned<RuleDef>],
        block: &str,
        scope: &mut Scope,
    ) -> Result<Vec<Rule>, SpecError> {
        let mut out = Vec::with_capacity(rules.len());
        for rd in rules {
            out.push(self.rule(rd, block, scope, false)?);
        }
        fill_consumed(&mut out);
        Ok(out)
    }

    fn rule(
        &mut self,
        rd: &Spanned<RuleDef>,
        block: &str,
        scope: &mut Scope,
        alternative: bool,
    ) -> Result<Rule, SpecError> {
        let r = rd.get_ref();
        let o = &r.origin;
        let span = rd.span();
        let err = |span: &Range<usize>, m: String| o.error(span, m);
        let kinds = [
            r.from.is_some(),
            r.constant.is_some(),
            r.first.is_some(),
            r.all.is_some(),
            r.for_each.is_some(),
            r.rest.is_some(),
        ];
        let n = kinds.iter().filter(|k| **k).count();
        if n != 1 {
            return Err(err(
                &span,
                format!(
                    "a rule needs exactly one of `from`, `const`, `first`, `all`, `for_each`, `rest` (found {n})"
                ),
            ));
        }
        let target = if alternative {
            if r.to.is_some() || r.required.is_some() || r.default.is_some() || r.id.is_some() {
                return Err(err(
                    &span,
                    "an alternative inside `first`/`all` has no `to`, `id`, `required` or `default`: the enclosing rule has them".into(),
                ));
            }
            if r.for_each.is_some() || r.rest.is_some() {
                return Err(err(
                    &span,
                    "an alternative produces values: `for_each` and `rest` are rules of their own"
                        .into(),
                ));
            }
            None
        } else {
            let Some(to) = &r.to else {
                return Err(err(
                    &span,
                    "a rule needs `to`: the target field it writes".into(),
                ));
            };
            Some(path::parse_target(to.get_ref()).map_err(|m| err(&to.span(), m))?)
        };
        if r.for_each.is_none() && (r.alias.is_some() || r.use_block.is_some() || r.rules.is_some())
        {
            return Err(err(
                &span,
                "`as`, `use` and `rules` go with `for_each`".into(),
            ));
        }
        if r.rest.is_none() && r.except.is_some() {
            return Err(err(&span, "`except` goes with `rest`".into()));
        }
        if (r.for_each.is_some() || r.rest.is_some())
            && (r.transform.is_some() || r.codes.is_some() || r.default.is_some())
        {
            return Err(err(
                &span,
                "`transform`, `codes` and `default` apply to values: not to `for_each` or `rest` rules".into(),
            ));
        }
        let when = match &r.when {
            Some(c) => Some(self.cond(c.get_ref(), o, &c.span(), scope)?),
            None => None,
        };
        let kind = if let Some(from) = &r.from {
            RuleKind::From(self.path(from, o, scope)?)
        } else if let Some(v) = &r.constant {
            RuleKind::Const(toml_to_json(v))
        } else if let Some(alts) = r.first.as_ref().or(r.all.as_ref()) {
            if alts.is_empty() {
                return Err(err(
                    &span,
                    "`first`/`all` needs at least one alternative".into(),
                ));
            }
            let mut compiled = Vec::with_capacity(alts.len());
            for alt in alts {
                compiled.push(self.rule(alt, block, scope, true)?);
            }
            if r.first.is_some() {
                RuleKind::First(compiled)
            } else {
                RuleKind::All(compiled)
            }
        } else if let Some(items) = &r.for_each {
            let items_path = self.path(items, o, scope)?;
            let alias = match &r.alias {
                Some(a) => {
                    let name = a.get_ref();
                    if !is_name(name) || name == "doc" || name == "item" || self.lets.contains(name)
                    {
                        return Err(err(
                            &a.span(),
                            format!("`as = {name:?}`: use a new name (not doc, item or a let)"),
                        ));
                    }
                    Some(name.clone())
                }
                None => None,
            };
            let label = format!("{block}/line {}", o.line(&span));
            let block_index = match (&r.use_block, &r.rules) {
                (Some(name), None) => self.use_block(name, alias.clone(), o, scope)?,
                (None, Some(rules)) => {
                    self.inline_block(rules, None, &label, alias.clone(), scope)?
                }
                (Some(name), Some(rules)) => {
                    // Inline rules first, then the block's rules, as one list.
                    let Some(shared) = self.def.block.get(name.get_ref()) else {
                        return Err(self.unknown_block(name, o));
                    };
                    self.used.insert(name.get_ref().clone());
                    self.inline_block(rules, Some(shared), &label, alias.clone(), scope)?
                }
                (None, None) => {
                    return Err(err(
                        &span,
                        "`for_each` needs `use = \"BLOCK\"`, inline `rules = [...]`, or both"
                            .into(),
                    ));
                }
            };
            RuleKind::ForEach {
                items: items_path,
                block: block_index,
                alias,
            }
        } else if let Some(object) = &r.rest {
            let path = self.path(object, o, scope)?;
            if path.chains.len() != 1 {
                return Err(err(
                    &object.span(),
                    "`rest` takes one path, without `|`".into(),
                ));
            }
            RuleKind::Rest {
                object: path,
                consumed: Vec::new(),
                except: r.except.clone().unwrap_or_default(),
                // Filled with `except` and the consumed keys by `fill_consumed`.
                skip: Vec::new(),
            }
        } else {
            return Err(err(&span, "a rule needs a source".into()));
        };
        let mut transforms = Vec::new();
        if let Some(list) = &r.transform {
            for t in list.get_ref() {
                transforms.push(self.transform(t, o, &list.span(), scope)?);
            }
        }
        let codes = match &r.codes {
            None => None,
            Some(name) => Some(self.codes_ref(name, o)?),
        };
        Ok(Rule {
            target,
            kind,
            when,
            transforms,
            codes,
            default: r.default.as_ref().map(toml_to_json),
            required: r.required.unwrap_or(false),
            meta: RuleMeta {
                id: r.id.clone(),
                file: o.file().to_owned(),
                line: o.line(&span),
                block: block.to_owned(),
                note: r.note.clone(),
            },
        })
    }

    fn codes_ref(&self, name: &Spanned<String>, o: &Origin) -> Result<Codes, SpecError> {
        let n = name.get_ref();
        if let Some(table) = self.codes.get(n) {
            return Ok(Codes::Table(Arc::clone(table)));
        }
        if let Some(list) = codelists().get(n) {
            return Ok(Codes::List(n.clone(), list));
        }
        let tables: Vec<&str> = self.codes.keys().map(String::as_str).collect();
        Err(o.error(
            &name.span(),
            format!(
                "unknown code list {n:?} (this spec's [codes]: {}; embedded lists: {})",
                if tables.is_empty() {
                    "none".to_owned()
                } else {
                    tables.join(", ")
                },
                codelists().names().join(", ")
            ),
        ))
    }

    fn transform(
        &self,
        t: &TransformDef,
        o: &Origin,
        span: &Range<usize>,
        scope: &mut Scope,
    ) -> Result<Transform, SpecError> {
        let unknown = |name: &str| {
            o.error(
                span,
                format!(
                    "unknown transform {name:?} (known: {})",
                    transform::NAMES.join(", ")
                ),
            )
        };
        match t {
            TransformDef::Name(name) => Transform::named(name).ok_or_else(|| unknown(name)),
            TransformDef::WithArg(map) => {
                let mut entries = map.iter();
                let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
                    return Err(o.error(
                        span,
                        "a transform with an argument is a one-key table, e.g. { join = \" \" }",
                    ));
                };
                let text = arg.as_str().ok_or_else(|| {
                    o.error(
                        span,
                        format!("transform {name}: the argument must be a string"),
                    )
                })?;
                match name.as_str() {
                    "join" => Ok(Transform::Join(text.to_owned())),
                    "split" if text.is_empty() => {
                        Err(o.error(span, "transform split: the separator must not be empty"))
                    }
                    "split" => Ok(Transform::Split(text.to_owned())),
                    "format" => match text.split_once("{}") {
                        Some((pre, post)) if !post.contains("{}") => {
                            Ok(Transform::Format(pre.to_owned(), post.to_owned()))
                        }
                        _ => {
                            Err(o.error(span, "transform format: the text needs exactly one `{}`"))
                        }
                    },
                    "position_in" => {
                        let mut path = path::parse(text).map_err(|m| o.error(span, m))?;
                        self.resolve(&mut path, scope)
                            .map_err(|m| o.error(span, m))?;
                        Ok(Transform::PositionIn(path))
                    }
                    other => Err(unknown(other)),
                }
            }
        }
    }

    fn cond(
        &self,
        c: &CondDef,
        o: &Origin,
        span: &Range<usize>,
        scope: &mut Scope,
    ) -> Result<Cond, SpecError> {
        let set = [
            c.exists.is_some(),
            c.absent.is_some(),
            c.is_true.is_some(),
            c.equals.is_some() || c.one_of.is_some(),
            c.all.is_some(),
            c.any.is_some(),
            c.not.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(o.error(
                span,
                "a condition is exactly one of exists, absent, is_true, path + equals, path + one_of, all, any, not",
            ));
        }
        if c.path.is_some() != (c.equals.is_some() || c.one_of.is_some())
            || (c.equals.is_some() && c.one_of.is_some())
        {
            return Err(o.error(span, "`path` goes with one of `equals` or `one_of`"));
        }
        let parse = |text: &str, scope: &mut Scope| -> Result<Path, SpecError> {
            let mut p = path::parse(text).map_err(|m| o.error(span, m))?;
            self.resolve(&mut p, scope).map_err(|m| o.error(span, m))?;
            Ok(p)
        };
        let nested = |list: &[CondDef], scope: &mut Scope| -> Result<Vec<Cond>, SpecError> {
            list.iter().map(|c| self.cond(c, o, span, scope)).collect()
        };
        Ok(if let Some(paths) = &c.exists {
            Cond::Exists(
                paths
                    .as_slice()
                    .iter()
                    .map(|p| parse(p, scope))
                    .collect::<Result<_, _>>()?,
            )
        } else if let Some(paths) = &c.absent {
            Cond::Absent(
                paths
                    .as_slice()
                    .iter()
                    .map(|p| parse(p, scope))
                    .collect::<Result<_, _>>()?,
            )
        } else if let Some(p) = &c.is_true {
            Cond::IsTrue(parse(p, scope)?)
        } else if let (Some(p), Some(v)) = (&c.path, &c.equals) {
            Cond::OneOf(parse(p, scope)?, vec![toml_to_json(v)])
        } else if let (Some(p), Some(vs)) = (&c.path, &c.one_of) {
            Cond::OneOf(parse(p, scope)?, vs.iter().map(toml_to_json).collect())
        } else if let Some(list) = &c.all {
            Cond::All(nested(list, scope)?)
        } else if let Some(list) = &c.any {
            Cond::Any(nested(list, scope)?)
        } else if let Some(inner) = &c.not {
            Cond::Not(Box::new(self.cond(inner, o, span, scope)?))
        } else {
            return Err(o.error(span, "empty condition"));
        })
    }

    fn inner_scope(outer: &Scope, alias: Option<String>) -> Scope {
        let mut vars = outer.outer.clone();
        vars.extend(outer.current.iter().cloned());
        Scope {
            outer: vars,
            current: alias,
            free: BTreeSet::new(),
        }
    }

    fn absorb(outer: &mut Scope, free: &BTreeSet<String>) {
        for name in free {
            if outer.current.as_deref() != Some(name.as_str()) {
                outer.free.insert(name.clone());
            }
        }
    }

    fn unknown_block(&self, name: &Spanned<String>, o: &Origin) -> SpecError {
        let known: Vec<&str> = self.def.block.keys().map(String::as_str).collect();
        o.error(
            &name.span(),
            format!(
                "unknown block {:?} (blocks: {})",
                name.get_ref(),
                known.join(", ")
            ),
        )
    }

    fn inline_block(
        &mut self,
        rules: &[Spanned<RuleDef>],
        shared: Option<&[Spanned<RuleDef>]>,
        label: &str,
        alias: Option<String>,
        scope: &mut Scope,
    ) -> Result<usize, SpecError> {
        let index = self.blocks.len();
        self.blocks.push(Block {
            rules: Vec::new(),
            width: 0,
        });
        let mut inner = Self::inner_scope(scope, alias);
        let mut compiled = Vec::new();
        for rd in rules.iter().chain(shared.into_iter().flatten()) {
            compiled.push(self.rule(rd, label, &mut inner, false)?);
        }
        fill_consumed(&mut compiled);
        self.blocks[index].width = width(&compiled);
        self.blocks[index].rules = compiled;
        Self::absorb(scope, &inner.free);
        Ok(index)
    }

    fn use_block(
        &mut self,
        name: &Spanned<String>,
        alias: Option<String>,
        o: &Origin,
        scope: &mut Scope,
    ) -> Result<usize, SpecError> {
        let n = name.get_ref();
        if let Some(&index) = self.block_ids.get(n) {
            if let Some(info) = self.block_info.get(&index) {
                if info.alias != alias {
                    return Err(o.error(
                        &name.span(),
                        format!(
                            "block {n:?} is used with `as = {:?}` here but `as = {:?}` elsewhere: a block's item has one name",
                            alias.as_deref().unwrap_or(""),
                            info.alias.as_deref().unwrap_or("")
                        ),
                    ));
                }
                let inner = Self::inner_scope(scope, alias);
                for var in &info.free {
                    if !inner.outer.contains(var) {
                        return Err(o.error(
                            &name.span(),
                            format!("block {n:?} uses ${var}, which is not defined where it is used here"),
                        ));
                    }
                }
                let free = info.free.clone();
                Self::absorb(scope, &free);
            }
            return Ok(index);
        }
        let Some(rules) = self.def.block.get(n) else {
            return Err(self.unknown_block(name, o));
        };
        let index = self.blocks.len();
        self.blocks.push(Block {
            rules: Vec::new(),
            width: 0,
        });
        self.block_ids.insert(n.clone(), index);
        self.block_info.insert(
            index,
            BlockInfo {
                alias: alias.clone(),
                free: BTreeSet::new(),
            },
        );
        let mut inner = Self::inner_scope(scope, alias);
        let compiled = self.rules(rules, n, &mut inner)?;
        self.blocks[index].width = width(&compiled);
        self.blocks[index].rules = compiled;
        if let Some(info) = self.block_info.get_mut(&index) {
            info.free.clone_from(&inner.free);
        }
        Self::absorb(scope, &inner.free);
        Ok(index)
    }
}

/// How many distinct top-level keys `rules` write.
fn width(rules: &[Rule]) -> usize {
    let mut keys: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.target.as_ref()?.keys.first().map(String::as_str))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

/// Every path a rule reads (for `rest`), alternatives and conditions included.
fn paths_of<'r>(rule: &'r Rule, out: &mut Vec<&'r Path>) {
    fn cond_paths<'r>(c: &'r Cond, out: &mut Vec<&'r Path>) {
        match c {
            Cond::Exists(ps) | Cond::Absent(ps) => out.extend(ps.iter()),
            Cond::IsTrue(p) | Cond::OneOf(p, _) => out.push(p),
            Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| cond_paths(c, out)),
            Cond::Not(c) => cond_paths(c, out),
        }
    }
    if let Some(c) = &rule.when {
        cond_paths(c, out);
    }
    match &rule.kind {
        RuleKind::From(p) => out.push(p),
        RuleKind::ForEach { items, .. } => out.push(items),
        RuleKind::First(alts) | RuleKind::All(alts) => alts.iter().for_each(|a| paths_of(a, out)),
        RuleKind::Const(_) | RuleKind::Rest { .. } => {}
    }
}

/// Fills each `rest` rule's consumed keys: the keys of its object that sibling rules read.
fn fill_consumed(rules: &mut [Rule]) {
    let mut wanted: Vec<(usize, Root, Vec<Step>)> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if let RuleKind::Rest { object, .. } = &rule.kind
            && let Some(chain) = object.chains.first()
        {
            wanted.push((i, chain.root.clone(), chain.steps.clone()));
        }
    }
    for (i, root, steps) in wanted {
        let mut consumed: BTreeSet<String> = BTreeSet::new();
        for (j, rule) in rules.iter().enumerate() {
            if j == i {
                continue;
            }
            let mut paths = Vec::new();
            paths_of(rule, &mut paths);
            for chain in paths.iter().flat_map(|p| p.chains.iter()) {
                if chain.root == root
                    && chain.steps.len() > steps.len()
                    && chain.steps[..steps.len()] == steps[..]
                    && let Step::Key(k) | Step::Token(k) = &chain.steps[steps.len()]
                {
                    consumed.insert(k.clone());
                }
            }
        }
        if let RuleKind::Rest {
            consumed: c,
            except,
            skip,
            ..
        } = &mut rules[i].kind
        {
            *c = consumed.into_iter().collect();
            let mut all: Vec<String> = c.iter().chain(except.iter()).cloned().collect();
            all.sort_by(|a, b| (a.len(), a.as_str()).cmp(&(b.len(), b.as_str())));
            all.dedup();
            *skip = all;
        }
    }
}
