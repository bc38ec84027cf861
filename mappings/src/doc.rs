//! Markdown documentation of loaded specs (`Mappings::document`).
//!
//! Paths are shown flattened: a rule inside a `for_each` shows its source and target from the
//! document root (`parties[*].person.gender`), with `$let` and `$as` names replaced by what
//! they stand for, so a reader can follow one field through a spec without reading the TOML.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::codelist::codelists;
use crate::engine::{Cond, Rule, RuleKind, Spec, TargetFormat, Unknown};
use crate::path::{Path, Root, Step};

/// One documented field mapping.
struct Row {
    target: String,
    source: String,
    /// Flattened source paths read (for lineage).
    reads: Vec<String>,
    transform: String,
    codes: String,
    notes: String,
}

struct Walk<'s> {
    spec: &'s Spec,
    lets: Vec<String>,
    rows: Vec<Row>,
    stack: Vec<usize>,
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ if rest.starts_with('[') || rest.starts_with("->") || rest.starts_with("<-") => {
            format!("{prefix}{rest}")
        }
        _ => format!("{prefix}.{rest}"),
    }
}

fn steps_text(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Token(t) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(t);
            }
            Step::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
            Step::Each => s.push_str("[*]"),
            Step::Filter {
                key,
                negate,
                values,
            } => {
                let op = if *negate { "!=" } else { "=" };
                let _ = write!(s, "[{key}{op}{}]", values.join(","));
            }
            Step::Out(rel) => {
                let _ = write!(s, "->{}", rel.as_deref().unwrap_or("*"));
            }
            Step::In(rel) => {
                let _ = write!(s, "<-{}", rel.as_deref().unwrap_or("*"));
            }
        }
    }
    s
}

/// Strips indexes and filters: the field a path names (`parties[*].person` → `parties.person`).
fn field_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl Walk<'_> {
    fn flatten(&self, path: &Path, item: &str, vars: &HashMap<String, String>) -> Vec<String> {
        path.chains
            .iter()
            .map(|chain| {
                let root = match &chain.root {
                    Root::Current => item.to_owned(),
                    Root::Doc => String::new(),
                    Root::Let(i) => self.lets.get(*i).cloned().unwrap_or_default(),
                    Root::Var(name) | Root::Named(name) => vars
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| format!("${name}")),
                };
                join(&root, &steps_text(&chain.steps))
            })
            .collect()
    }

    fn cond(
        &self,
        c: &Cond,
        item: &str,
        vars: &HashMap<String, String>,
        reads: &mut Vec<String>,
    ) -> String {
        let paths = |p: &Path, reads: &mut Vec<String>| {
            let flat = self.flatten(p, item, vars);
            reads.extend(flat.iter().cloned());
            format!("`{}`", flat.join(" | "))
        };
        match c {
            Cond::Exists(ps) => {
                let list: Vec<String> = ps.iter().map(|p| paths(p, reads)).collect();
                format!("exists {}", list.join(" or "))
            }
            Cond::Absent(ps) => {
                let list: Vec<String> = ps.iter().map(|p| paths(p, reads)).collect();
                format!("none of {}", list.join(", "))
            }
            Cond::IsTrue(p) => format!("{} is true", paths(p, reads)),
            Cond::OneOf(p, vs) => {
                let list: Vec<String> = vs.iter().map(ToString::to_string).collect();
                format!("{} in [{}]", paths(p, reads), list.join(", "))
            }
            Cond::All(cs) => {
                let list: Vec<String> =
                    cs.iter().map(|c| self.cond(c, item, vars, reads)).collect();
                format!("({})", list.join(" and "))
            }
            Cond::Any(cs) => {
                let list: Vec<String> =
                    cs.iter().map(|c| self.cond(c, item, vars, reads)).collect();
                format!("({})", list.join(" or "))
            }
            Cond::Not(c) => format!("not {}", self.cond(c, item, vars, reads)),
        }
    }

    /// How a value rule or alternative gets its values, in words.
    fn source(
        &self,
        rule: &Rule,
        item: &str,
        vars: &HashMap<String, String>,
        reads: &mut Vec<String>,
    ) -> String {
        let mut text = match &rule.kind {
            RuleKind::From(p) => {
                let flat = self.flatten(p, item, vars);
                reads.extend(flat.iter().cloned());
                format!("`{}`", flat.join(" | "))
            }
            RuleKind::Const(v) => format!("const {v}"),
            RuleKind::First(alts) | RuleKind::All(alts) => {
                let word = if matches!(rule.kind, RuleKind::First(_)) {
                    "first of"
                } else {
                    "all of"
                };
                let list: Vec<String> = alts
                    .iter()
                    .enumerate()
                    .map(|(i, a)| format!("({}) {}", i + 1, self.source(a, item, vars, reads)))
                    .collect();
                format!("{word}: {}", list.join("; "))
            }
            RuleKind::ForEach { .. } | RuleKind::Rest { .. } => String::new(),
        };
        if rule.target.is_none() {
            if let Some(c) = &rule.when {
                text = format!("when {}: {text}", self.cond(c, item, vars, reads));
            }
            if let Some(codes) = &rule.codes {
                let _ = write!(text, " via `{}`", codes.name());
            }
        }
        text
    }

    fn block(&mut self, index: usize, item: &str, target: &str, vars: &HashMap<String, String>) {
        if self.stack.contains(&index) {
            return;
        }
        let Some(block) = self.spec.blocks.get(index) else {
            return;
        };
        self.stack.push(index);
        for rule in &block.rules {
            let Some(to) = &rule.target else { continue };
            let full_target = join(target, &to.text);
            let mut reads = Vec::new();
            let mut notes = Vec::new();
            if let Some(c) = &rule.when {
                notes.push(format!("when {}", self.cond(c, item, vars, &mut reads)));
            }
            if rule.required {
                notes.push("required".into());
            }
            if let Some(d) = &rule.default {
                notes.push(format!("default {d}"));
            }
            if let Some(id) = &rule.meta.id {
                notes.push(format!("id `{id}`"));
            }
            if let Some(n) = &rule.meta.note {
                notes.push(n.clone());
            }
            match &rule.kind {
                RuleKind::ForEach {
                    items,
                    block,
                    alias,
                } => {
                    let flat = self.flatten(items, item, vars);
                    let inner_item = flat.first().cloned().unwrap_or_default();
                    let mut inner_vars = vars.clone();
                    if let Some(a) = alias {
                        inner_vars.insert(a.clone(), inner_item.clone());
                    }
                    notes.insert(0, "one per item".into());
                    self.rows.push(Row {
                        target: full_target.clone(),
                        source: format!("for each `{}`", flat.join(" | ")),
                        reads: flat,
                        transform: String::new(),
                        codes: String::new(),
                        notes: notes.join("; "),
                    });
                    self.block(*block, &inner_item, &full_target, &inner_vars);
                }
                RuleKind::Rest {
                    object,
                    consumed,
                    except,
                    ..
                } => {
                    let mut flat = self.flatten(object, item, vars);
                    if flat.iter().all(String::is_empty) {
                        flat = vec!["(the document)".to_owned()];
                    }
                    let mut skipped: Vec<&str> = consumed.iter().map(String::as_str).collect();
                    skipped.extend(except.iter().map(String::as_str));
                    self.rows.push(Row {
                        target: full_target,
                        source: format!(
                            "every other member of `{}` (except {})",
                            flat.join(" | "),
                            skipped.join(", ")
                        ),
                        reads: Vec::new(),
                        transform: String::new(),
                        codes: String::new(),
                        notes: notes.join("; "),
                    });
                }
                _ => {
                    let source = self.source(rule, item, vars, &mut reads);
                    self.rows.push(Row {
                        target: full_target,
                        source,
                        reads,
                        transform: rule
                            .transforms
                            .iter()
                            .map(|t| t.describe())
                            .collect::<Vec<_>>()
                            .join(", "),
                        codes: rule
                            .codes
                            .as_ref()
                            .map(|c| c.name().to_owned())
                            .unwrap_or_default(),
                        notes: notes.join("; "),
                    });
                }
            }
        }
        self.stack.pop();
    }
}

fn rows_of(spec: &Spec) -> Vec<Row> {
    let mut walk = Walk {
        spec,
        lets: Vec::new(),
        rows: Vec::new(),
        stack: Vec::new(),
    };
    let vars = HashMap::new();
    for (_, path) in &spec.lets {
        let flat = walk.flatten(path, "", &vars);
        walk.lets.push(flat.join(" | "));
    }
    walk.block(0, "", "", &vars);
    walk.rows
}

fn spec_section(out: &mut String, spec: &Spec, rows: &[Row], current: bool) {
    let _ = writeln!(out, "## `{}`\n", spec.name());
    if !current {
        let _ = writeln!(
            out,
            "Not the current version of `{}`: fresh deliveries do not use it. A replay can ask \
             for it (`mappingVersion`), and the gateway's `[mappings] current` setting can make \
             it current.\n",
            spec.id
        );
    }
    if !spec.description.is_empty() {
        let _ = writeln!(out, "{}\n", spec.description.trim());
    }
    let target = match &spec.target_format {
        TargetFormat::Json => "json".to_owned(),
        TargetFormat::Xml {
            root, namespace, ..
        } => format!(
            "xml, root `<{root}>`{}",
            namespace
                .as_ref()
                .map(|n| format!(" in `{n}`"))
                .unwrap_or_default()
        ),
    };
    let _ = writeln!(
        out,
        "- file: `{}`\n- source: `{}` ({:?})\n- target: `{}` ({target})\n",
        spec.file, spec.source_model, spec.source_format, spec.target_model
    );
    let _ = writeln!(
        out,
        "| target field | source | transform | code list | notes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            cell(&r.target),
            cell(&r.source),
            cell(&r.transform),
            cell(&r.codes),
            cell(&r.notes)
        );
    }
    out.push('\n');
    for table in spec.codes.values() {
        let _ = writeln!(out, "### Code list `{}`\n", table.name);
        if let Some(d) = &table.description {
            let _ = writeln!(out, "{}\n", d.trim());
        }
        let list = table.from_list.as_deref().and_then(|l| codelists().get(l));
        let _ = writeln!(out, "| code | meaning | becomes |\n|---|---|---|");
        for key in &table.keys {
            let label = list.and_then(|l| l.label(key)).unwrap_or("");
            let to = table
                .map
                .get(key)
                .map(ToString::to_string)
                .unwrap_or_default();
            let _ = writeln!(out, "| `{key}` | {} | {} |", cell(label), cell(&to));
        }
        let unknown = match &table.unknown {
            Unknown::Error => "an error (the exchange is parked)".to_owned(),
            Unknown::Keep => "kept as it is".to_owned(),
            Unknown::Omit => "left out".to_owned(),
            Unknown::Default(d) => format!("{d}"),
        };
        let _ = writeln!(out, "\nAny other code: {unknown}.\n");
    }
}

/// The documentation of `specs` as Markdown.
/// `specs`: every loaded version, each with whether it is its spec's current version.
pub(crate) fn render(specs: &[(&Spec, bool)]) -> String {
    let mut out = String::from("# Mapping specs\n\n");
    let _ = writeln!(
        out,
        "Generated from the loaded spec files. Paths are flattened from the document root; \
         `[*]` means every element, `[k=v]` the elements whose `k` is `v`, `->rel` follows a \
         JSON:API relationship and `<-rel` finds the entities whose `rel` points here.\n"
    );
    let all: Vec<(&Spec, Vec<Row>)> = specs.iter().map(|(s, _)| (*s, rows_of(s))).collect();
    for ((spec, rows), (_, current)) in all.iter().zip(specs) {
        spec_section(&mut out, spec, rows, *current);
    }
    for (a, a_rows) in &all {
        for (b, b_rows) in &all {
            if a.target_model != b.source_model || std::ptr::eq(*a, *b) {
                continue;
            }
            let _ = writeln!(
                out,
                "## Lineage: `{}` → `{}` → `{}`\n\n({} then {})\n",
                a.source_model,
                a.target_model,
                b.target_model,
                a.name(),
                b.name()
            );
            let _ = writeln!(
                out,
                "| {} field | {} field | {} field |\n|---|---|---|",
                a.source_model, a.target_model, b.target_model
            );
            for ra in a_rows.iter().filter(|r| !r.source.starts_with("for each")) {
                let field = field_of(&ra.target);
                let targets: Vec<String> = b_rows
                    .iter()
                    .filter(|rb| rb.reads.iter().any(|p| field_of(p) == field))
                    .map(|rb| format!("`{}`", rb.target))
                    .collect();
                let targets = if targets.is_empty() {
                    "—".to_owned()
                } else {
                    targets.join(", ")
                };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} |",
                    cell(&ra.source),
                    cell(&ra.target),
                    cell(&targets)
                );
            }
            out.push('\n');
        }
    }
    out
}
