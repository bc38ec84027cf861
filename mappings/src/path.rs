//! Source path expressions: parsing (at spec load) and the compiled form the engine walks.
//!
//! ```text
//! path    := chain ( "|" chain )*            first chain that yields anything wins
//! chain   := ( "$" name )? step*             no "$": relative to the current item
//! step    := "." key | key (first step only)
//!          | "[" n "]" | "[*]"               index / every element
//!          | "[" key ( "=" | "!=" ) v ("," v)* "]"   keep elements whose key is (not) one of v
//!          | "->" rel | "->*"                follow a JSON:API relationship to the entities
//!          | "<-" rel | "<-*"                entities whose relationship `rel` names this one
//! ```

use std::fmt;

/// Where a chain starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Root {
    /// The current item (no `$`, or `$item`, or the `as` name of the innermost `for_each`).
    Current,
    /// `$doc`: the whole source document.
    Doc,
    /// A `[let]` value, by index.
    Let(usize),
    /// The item of an enclosing `for_each`, by its `as` name.
    Var(String),
    /// Not yet resolved (straight from the parser).
    Named(String),
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Object member.
    Key(String),
    /// Array element.
    Index(usize),
    /// A JSON Pointer token (`/data/0/id`): an object member, or an array element when the
    /// token is a decimal index.
    Token(String),
    /// Every element of an array (a non-array value stands for itself).
    Each,
    /// Array elements (or the object itself) whose member `key` is (not) one of `values`.
    Filter {
        key: String,
        negate: bool,
        values: Vec<String>,
    },
    /// Follow a JSON:API relationship (`None`: every relationship).
    Out(Option<String>),
    /// Entities whose JSON:API relationship names the current entity (`None`: any).
    In(Option<String>),
}

/// A root and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) root: Root,
    pub(crate) steps: Vec<Step>,
}

impl Chain {
    /// Whether the chain uses JSON:API relationship steps.
    pub(crate) fn uses_links(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Out(_) | Step::In(_)))
    }
}

/// A parsed path: alternatives separated by `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) chains: Vec<Chain>,
    /// The text as written in the spec.
    pub(crate) text: String,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_key_char(c: char) -> bool {
    !matches!(c, '.' | '[' | ']' | '|' | '$' | '<' | '>' | '=' | '!' | ',') && !c.is_whitespace()
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Parser<'t> {
    fn rest(&self) -> &'t str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    /// A key: key characters, where `-` ends the key when it starts `->`.
    fn key(&mut self) -> &'t str {
        let start = self.pos;
        let rest = self.rest();
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if !is_key_char(c) || (c == '-' && rest[i..].starts_with("->")) {
                break;
            }
            end = i + c.len_utf8();
        }
        self.pos += end;
        &self.text[start..self.pos]
    }

    fn err(&self, what: &str) -> String {
        format!(
            "bad path {:?} at column {}: {what}",
            self.text,
            self.pos + 1
        )
    }

    fn chain(&mut self) -> Result<Chain, String> {
        self.skip_ws();
        let root = if self.eat("$") {
            let name = self.key();
            // A variable's name ends where a JSON Pointer starts (`$doc/data/id`).
            let name = match name.find('/') {
                Some(cut) => {
                    self.pos -= name.len() - cut;
                    &name[..cut]
                }
                None => name,
            };
            if name.is_empty() {
                return Err(self.err("expected a name after `$`"));
            }
            Root::Named(name.to_owned())
        } else {
            Root::Current
        };
        let mut steps = Vec::new();
        if self.rest().starts_with('/') {
            // A JSON Pointer (RFC 6901) after the root: the rest of the chain.
            while self.eat("/") {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| c == '/' || c == '|' || c.is_whitespace())
                    .unwrap_or(rest.len());
                let raw = &rest[..end];
                if raw.contains('~') && !valid_pointer_escapes(raw) {
                    return Err(self.err("`~` in a JSON Pointer must be `~0` or `~1`"));
                }
                steps.push(Step::Token(raw.replace("~1", "/").replace("~0", "~")));
                self.pos += end;
            }
            self.skip_ws();
            return Ok(Chain { root, steps });
        }
        if root == Root::Current {
            let key = self.key();
            if !key.is_empty() {
                steps.push(Step::Key(key.to_owned()));
            } else if !(self.rest().starts_with('[')
                || self.rest().starts_with("->")
                || self.rest().starts_with("<-"))
            {
                return Err(self.err("expected a field name, `$name`, `/`, `[`, `->` or `<-`"));
            }
        }
        loop {
            if self.eat(".") {
                let key = self.key();
                if key.is_empty() {
                    return Err(self.err("expected a field name after `.`"));
                }
                steps.push(Step::Key(key.to_owned()));
            } else if self.eat("->") {
                steps.push(Step::Out(self.rel()?));
            } else if self.eat("<-") {
                steps.push(Step::In(self.rel()?));
            } else if self.eat("[") {
                steps.push(self.bracket()?);
            } else {
                break;
            }
        }
        self.skip_ws();
        Ok(Chain { root, steps })
    }

    fn rel(&mut self) -> Result<Option<String>, String> {
        if self.eat("*") {
            return Ok(None);
        }
        let name = self.key();
        if name.is_empty() {
            return Err(self.err("expected a relationship name or `*`"));
        }
        Ok(Some(name.to_owned()))
    }

    fn bracket(&mut self) -> Result<Step, String> {
        if self.eat("*]") {
            return Ok(Step::Each);
        }
        let digits: &str = {
            let rest = self.rest();
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            &rest[..n]
        };
        if !digits.is_empty() && self.rest()[digits.len()..].starts_with(']') {
            let index = digits.parse().map_err(|_| self.err("index too large"))?;
            self.pos += digits.len() + 1;
            return Ok(Step::Index(index));
        }
        let key = self.key();
        if key.is_empty() {
            return Err(self.err("expected `*`, an index or `key=value` inside `[...]`"));
        }
        let negate = if self.eat("!=") {
            true
        } else if self.eat("=") {
            false
        } else {
            return Err(self.err("expected `=` or `!=` after the filter key"));
        };
        let close = self
            .rest()
            .find(']')
            .ok_or_else(|| self.err("missing `]`"))?;
        let values: Vec<String> = self.rest()[..close]
            .split(',')
            .map(|v| v.trim().to_owned())
            .collect();
        if values.iter().any(String::is_empty) {
            return Err(self.err("empty filter value"));
        }
        self.pos += close + 1;
        Ok(Step::Filter {
            key: key.to_owned(),
            negate,
            values,
        })
    }
}

/// `~` only as `~0` or `~1` (RFC 6901).
fn valid_pointer_escapes(token: &str) -> bool {
    let b = token.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// Parses a path expression; variable names stay unresolved ([`Root::Named`]).
pub(crate) fn parse(text: &str) -> Result<Path, String> {
    let mut p = Parser { text, pos: 0 };
    let mut chains = vec![p.chain()?];
    while p.eat("|") {
        chains.push(p.chain()?);
    }
    if p.pos != text.len() {
        return Err(p.err("unexpected character"));
    }
    Ok(Path {
        chains,
        text: text.to_owned(),
    })
}

/// A target path: object keys, the last one optionally `[]` (append to an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) keys: Vec<String>,
    pub(crate) append: bool,
    pub(crate) text: String,
}

/// Parses a target path (`incident.location`, `parties[]`, `People.Person[]`, `@ref`).
pub(crate) fn parse_target(text: &str) -> Result<Target, String> {
    let (body, append) = match text.strip_suffix("[]") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let keys: Vec<String> = body.split('.').map(str::to_owned).collect();
    for key in &keys {
        if key.is_empty() || !key.chars().all(is_key_char) || key.contains("->") {
            return Err(format!(
                "bad target path {text:?}: keys are names separated by `.`, and only the last may end with `[]`"
            ));
        }
    }
    Ok(Target {
        keys,
        append,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Step {
        Step::Key(k.into())
    }

    #[test]
    fn parses_steps() {
        let p = parse("$doc.included[type=person,location][0].attributes.givenName[*]")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.chains.len(), 1);
        assert_eq!(p.chains[0].root, Root::Named("doc".into()));
        assert_eq!(
            p.chains[0].steps,
            vec![
                key("included"),
                Step::Filter {
                    key: "type".into(),
                    negate: false,
                    values: vec!["person".into(), "location".into()]
                },
                Step::Index(0),
                key("attributes"),
                key("givenName"),
                Step::Each,
            ]
        );
    }

    #[test]
    fn parses_links_and_alternatives() {
        let p = parse("$person->currentAddress.attributes | $person<-guardian.id | x-y")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.chains.len(), 3);
        assert_eq!(
            p.chains[0].steps,
            vec![Step::Out(Some("currentAddress".into())), key("attributes")]
        );
        assert_eq!(
            p.chains[1].steps,
            vec![Step::In(Some("guardian".into())), key("id")]
        );
        assert_eq!(p.chains[2].steps, vec![key("x-y")]);
        assert!(p.chains[0].uses_links());
        let p = parse("->*").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.chains[0].steps, vec![Step::Out(None)]);
        let p = parse("@ref").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.chains[0].steps, vec![key("@ref")]);
    }

    #[test]
    fn parses_json_pointers() {
        let p =
            parse("/data/attributes/a~1b | $doc/included/0/id").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.chains[0].steps,
            vec![
                Step::Token("data".into()),
                Step::Token("attributes".into()),
                Step::Token("a/b".into())
            ]
        );
        assert_eq!(p.chains[1].root, Root::Named("doc".into()));
        assert_eq!(p.chains[1].steps[1], Step::Token("0".into()));
        assert!(parse("/a~2").is_err());
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "", "a..b", "a[", "a[x]", "a[x=]", "$", "a.", "a b", "a|", "a]",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn targets() {
        let t = parse_target("People.Person[]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.keys, ["People", "Person"]);
        assert!(t.append);
        assert!(parse_target("a[].b").is_err());
        assert!(parse_target("a..b").is_err());
        assert!(parse_target("$doc.a").is_err());
    }
}
