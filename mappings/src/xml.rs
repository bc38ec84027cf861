//! XML ↔ `serde_json::Value`, by one documented convention (see `SPEC-FORMAT.md`, "XML").
//!
//! Writing ([`to_xml`]) an object as the content of a root element:
//! - a key `@name` is an attribute (`@xmlns` / `@xmlns:p` declare namespaces);
//! - the key `#text` is the element's text;
//! - any other key is a child element; an array is that element repeated once per item;
//! - strings, numbers and booleans are text (`true`/`false`); `null` writes nothing;
//!   an empty string writes an empty element `<X/>`;
//! - children appear in the object's key order; text is escaped (`& < >` and, in attributes,
//!   `"` and whitespace other than spaces), and characters XML 1.0 cannot carry are an error.
//!
//! Reading ([`from_xml`]) is the reverse, with every leaf as a string: an element with neither
//! attributes nor child elements is its text (`""` when empty); otherwise an object with
//! `@attr` keys, child keys (a name seen twice or more becomes an array) and `#text` for
//! non-whitespace text. Whitespace-only text between child elements is ignored, so indented
//! and compact XML read the same. Names are kept as written, prefixes included. Comments,
//! processing instructions and the XML declaration are skipped; a DOCTYPE is rejected (no
//! entity expansion), and so is nesting deeper than [`MAX_DEPTH`].

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::events::Event;
use serde_json::{Map, Value};

/// Deepest element nesting [`from_xml`] accepts.
pub const MAX_DEPTH: usize = 128;

/// An XML conversion error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The value cannot be written as XML.
    #[error("cannot write XML at {path}: {message}")]
    Write {
        /// Dotted path of the offending value.
        path: String,
        /// Why.
        message: String,
    },
    /// The text is not XML this reader accepts.
    #[error("cannot read XML at byte {position}: {message}")]
    Read {
        /// Byte offset in the input.
        position: u64,
        /// Why.
        message: String,
    },
}

/// How [`to_xml`] lays out its output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Spaces per nesting level; 0 writes everything on one line.
    pub indent: usize,
    /// Start with `<?xml version="1.0" encoding="UTF-8"?>`.
    pub declaration: bool,
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

pub(crate) fn is_name(name: &str) -> bool {
    if name.is_ascii() {
        // The same rule on bytes (for ASCII, `is_alphabetic` is `is_ascii_alphabetic`).
        let b = name.as_bytes();
        return b
            .first()
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
            && b[1..]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-' | b'.'));
    }
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

/// Escapes `text` into `out`; `Err(c)` names a character XML 1.0 cannot carry.
fn escape_into(out: &mut String, text: &str, attribute: bool) -> Result<(), char> {
    let plain = |c: char| {
        matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
            && !matches!(c, '&' | '<' | '>' | '"')
    };
    // ASCII text is checked byte by byte; other text character by character.
    let plain_ascii = |b: &u8| *b >= 0x20 && *b < 0x80 && !matches!(b, b'&' | b'<' | b'>' | b'"');
    if text.as_bytes().iter().all(plain_ascii) || (!text.is_ascii() && text.chars().all(plain)) {
        out.push_str(text);
        return Ok(());
    }
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            c if is_xml_char(c) => out.push(c),
            c => return Err(c),
        }
    }
    Ok(())
}

/// What the writer needs of a tree: implemented by [`Value`] and by the mapping engine's
/// target tree, so that a mapping's output is written without first becoming a `Value`.
pub(crate) trait XmlTree {
    /// Writes this value as element `name` (an array repeats the element).
    fn write_element<'v>(
        &'v self,
        w: &mut Writer<'v>,
        name: &'v str,
        depth: usize,
    ) -> Result<(), XmlError>;
    /// Writes this value as the content of the root element `root`.
    fn write_root<'v>(&'v self, w: &mut Writer<'v>, root: &'v str) -> Result<(), XmlError>;
    /// The text of a string, number or boolean.
    fn scalar(&self) -> Option<Cow<'_, str>>;
    fn is_null(&self) -> bool;
    fn is_array(&self) -> bool;
    /// Null, or a list of nothing: writes no element.
    fn is_nothing(&self) -> bool;
}

/// Any tree the mapping engine reads (a `Value`, or a source parsed from text) is written as the
/// `Value` it stands for.
impl<T: crate::input::Tree> XmlTree for T {
    fn write_element<'v>(
        &'v self,
        w: &mut Writer<'v>,
        name: &'v str,
        depth: usize,
    ) -> Result<(), XmlError> {
        if !is_name(name) {
            return Err(w.error(None, format!("{name:?} is not an XML name")));
        }
        if let Some(items) = self.items() {
            w.array(name, items, depth)
        } else if let Some(members) = self.members() {
            w.object(name, members, depth)
        } else if let Some(text) = self.scalar_text() {
            w.scalar_element(name, &text)
        } else {
            Ok(())
        }
    }

    fn write_root<'v>(&'v self, w: &mut Writer<'v>, root: &'v str) -> Result<(), XmlError> {
        if let Some(members) = self.members() {
            w.object(root, members, 0)
        } else if self.items().is_some() || crate::input::Tree::is_null(self) {
            Err(w.error(None, "the root must be an object or a scalar".into()))
        } else {
            self.write_element(w, root, 0)
        }
    }

    fn scalar(&self) -> Option<Cow<'_, str>> {
        self.scalar_text()
    }

    fn is_null(&self) -> bool {
        crate::input::Tree::is_null(self)
    }

    fn is_array(&self) -> bool {
        self.items().is_some()
    }

    fn is_nothing(&self) -> bool {
        crate::input::Tree::is_null(self)
            || self
                .items()
                .is_some_and(|items| items.iter().all(crate::input::Tree::is_null))
    }
}

/// The XML writer (see [`to_xml`]).
pub(crate) struct Writer<'v> {
    out: String,
    indent: usize,
    /// Where the writer is, for errors: element names and array positions.
    path: Vec<(&'v str, Option<usize>)>,
}

impl<'v> Writer<'v> {
    #[cold]
    pub(crate) fn error(&self, extra: Option<&str>, message: String) -> XmlError {
        let mut path = String::new();
        for (i, (name, index)) in self.path.iter().enumerate() {
            if i > 0 {
                path.push('.');
            }
            path.push_str(name);
            if let Some(n) = index {
                let _ = write!(path, "[{n}]");
            }
        }
        if let Some(extra) = extra {
            let _ = write!(path, ".{extra}");
        }
        XmlError::Write { path, message }
    }

    fn escape(&mut self, text: &str, attribute: bool, extra: Option<&str>) -> Result<(), XmlError> {
        escape_into(&mut self.out, text, attribute).map_err(|c| {
            self.error(
                extra,
                format!("character U+{:04X} cannot appear in XML 1.0", c as u32),
            )
        })
    }

    fn newline(&mut self, depth: usize) {
        if self.indent > 0 {
            self.out.push('\n');
            for _ in 0..depth * self.indent {
                self.out.push(' ');
            }
        }
    }

    fn element<T: XmlTree>(
        &mut self,
        name: &'v str,
        value: &'v T,
        depth: usize,
    ) -> Result<(), XmlError> {
        self.path.push((name, None));
        let result = value.write_element(self, name, depth);
        self.path.pop();
        result
    }

    /// Element `name` once per item of `items`.
    pub(crate) fn array<T: XmlTree>(
        &mut self,
        name: &'v str,
        items: &'v [T],
        depth: usize,
    ) -> Result<(), XmlError> {
        let mut first = true;
        for (i, item) in items.iter().enumerate() {
            if let Some(last) = self.path.last_mut() {
                last.1 = Some(i);
            }
            if item.is_array() {
                return Err(self.error(None, "a list inside a list has no XML form".into()));
            }
            if item.is_null() {
                continue;
            }
            if !first {
                self.newline(depth);
            }
            first = false;
            item.write_element(self, name, depth)?;
        }
        Ok(())
    }

    /// Element `name` with the text `text` of a scalar.
    fn scalar_element(&mut self, name: &str, text: &str) -> Result<(), XmlError> {
        self.out.push('<');
        self.out.push_str(name);
        if text.is_empty() {
            self.out.push_str("/>");
        } else {
            self.out.push('>');
            self.escape(text, false, None)?;
            self.close(name);
        }
        Ok(())
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// Element `name` whose attributes, text and children are the members `map`.
    pub(crate) fn object<T, I>(&mut self, name: &str, map: I, depth: usize) -> Result<(), XmlError>
    where
        T: XmlTree + 'v,
        I: Iterator<Item = (&'v str, &'v T)> + Clone,
    {
        self.out.push('<');
        self.out.push_str(name);
        let mut text: Option<Cow<'_, str>> = None;
        let mut children = false;
        for (key, v) in map.clone() {
            if let Some(attr) = key.strip_prefix('@') {
                let Some(value) = v.scalar() else {
                    if v.is_null() {
                        continue;
                    }
                    return Err(self.error(
                        Some(key),
                        "an attribute value must be a string, number or boolean".into(),
                    ));
                };
                if !is_name(attr) {
                    return Err(
                        self.error(Some(key), format!("{attr:?} is not an XML attribute name"))
                    );
                }
                self.out.push(' ');
                self.out.push_str(attr);
                self.out.push_str("=\"");
                self.escape(&value, true, Some(key))?;
                self.out.push('"');
            } else if key == "#text" {
                text = if v.is_null() {
                    None
                } else {
                    Some(v.scalar().ok_or_else(|| {
                        self.error(
                            Some(key),
                            "#text must be a string, number or boolean".into(),
                        )
                    })?)
                };
            } else if !v.is_nothing() {
                children = true;
            }
        }
        let text = text.filter(|t| !t.is_empty());
        if !children && text.is_none() {
            self.out.push_str("/>");
            return Ok(());
        }
        self.out.push('>');
        // Mixed content is written inline: indentation would change its text.
        let indent = text.is_none();
        if let Some(t) = &text {
            self.escape(t, false, Some("#text"))?;
        }
        let saved = self.indent;
        if !indent {
            self.indent = 0;
        }
        for (key, v) in map {
            if key.starts_with('@') || key == "#text" || v.is_nothing() {
                continue;
            }
            self.newline(depth + 1);
            self.element(key, v, depth + 1)?;
        }
        self.indent = saved;
        if indent {
            self.newline(depth);
        }
        self.close(name);
        Ok(())
    }
}

/// Writes `value` as the content of a root element `root` (see the module documentation).
pub fn to_xml(root: &str, value: &Value, options: WriteOptions) -> Result<String, XmlError> {
    write_tree(root, value, options)
}

/// [`to_xml`] for any [`XmlTree`].
pub(crate) fn write_tree<T: XmlTree>(
    root: &str,
    value: &T,
    options: WriteOptions,
) -> Result<String, XmlError> {
    let mut w = Writer {
        out: String::with_capacity(1024),
        indent: options.indent,
        path: vec![(root, None)],
    };
    if options.declaration {
        w.out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        w.newline(0);
    }
    value.write_root(&mut w, root)?;
    if options.indent > 0 {
        w.out.push('\n');
    }
    Ok(w.out)
}

/// An element being read.
struct Open {
    name: String,
    map: Map<String, Value>,
    text: String,
    /// Whether any text seen was not whitespace.
    has_text: bool,
    children: bool,
}

impl Open {
    fn finish(self) -> (String, Value) {
        let value = if self.map.is_empty() {
            Value::String(self.text)
        } else {
            let mut map = self.map;
            if self.has_text || (!self.children && !self.text.is_empty()) {
                map.insert("#text".into(), Value::String(self.text));
            }
            Value::Object(map)
        };
        (self.name, value)
    }
}

fn add_child(parent: &mut Open, name: String, value: Value) {
    parent.children = true;
    match parent.map.get_mut(&name) {
        None => {
            parent.map.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = std::mem::take(existing);
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// Reads XML into `(root element name, value)` (see the module documentation).
pub fn from_xml(text: &str) -> Result<(String, Value), XmlError> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Open> = Vec::new();
    let mut done: Option<(String, Value)> = None;
    let fail = |reader: &quick_xml::Reader<&[u8]>, message: String| XmlError::Read {
        position: reader.buffer_position(),
        message,
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| fail(&reader, e.to_string()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if done.is_some() => {
                let _ = start;
                return Err(fail(&reader, "a second root element".into()));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(fail(
                        &reader,
                        format!("elements nested deeper than {MAX_DEPTH}"),
                    ));
                }
                let name = start.name().as_ref().to_owned();
                let mut open = Open {
                    name,
                    map: Map::new(),
                    text: String::new(),
                    has_text: false,
                    children: false,
                };
                for attr in start.attributes().with_checks(true) {
                    let attr = attr.map_err(|e| fail(&reader, e.to_string()))?;
                    let key: &str = attr.key.as_ref();
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| fail(&reader, e.to_string()))?;
                    open.map
                        .insert(format!("@{key}"), Value::String(value.into_owned()));
                }
                if matches!(event, Event::Empty(_)) {
                    let (name, value) = open.finish();
                    match stack.last_mut() {
                        Some(parent) => add_child(parent, name, value),
                        None => done = Some((name, value)),
                    }
                } else {
                    stack.push(open);
                }
            }
            Event::End(_) => {
                let Some(open) = stack.pop() else {
                    return Err(fail(&reader, "an end tag without a start".into()));
                };
                let (name, value) = open.finish();
                match stack.last_mut() {
                    Some(parent) => add_child(parent, name, value),
                    None => done = Some((name, value)),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => {
                        if !content.chars().all(char::is_whitespace) {
                            open.has_text = true;
                        }
                        open.text.push_str(&content);
                    }
                    None if content.trim().is_empty() => {}
                    None => return Err(fail(&reader, "text outside the root element".into())),
                }
            }
            Event::CData(c) => {
                let Some(open) = stack.last_mut() else {
                    return Err(fail(&reader, "CDATA outside the root element".into()));
                };
                let content: &str = c.as_ref();
                open.has_text = true;
                open.text.push_str(content);
            }
            Event::GeneralRef(r) => {
                let Some(open) = stack.last_mut() else {
                    return Err(fail(&reader, "a reference outside the root element".into()));
                };
                let c = if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| fail(&reader, e.to_string()))?
                {
                    c
                } else {
                    let name: &str = r.as_ref();
                    match name {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(fail(&reader, format!("unknown entity &{other};"))),
                    }
                };
                if !is_xml_char(c) {
                    return Err(fail(
                        &reader,
                        format!("character U+{:04X} is not allowed in XML 1.0", c as u32),
                    ));
                }
                if !c.is_whitespace() {
                    open.has_text = true;
                }
                open.text.push(c);
            }
            Event::DocType(_) => {
                return Err(fail(&reader, "DOCTYPE is not accepted".into()));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(fail(&reader, "the document ends inside an element".into()));
    }
    done.ok_or_else(|| fail(&reader, "no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_the_convention() {
        let v = json!({
            "@xmlns": "urn:nmpp:athena:1",
            "Header": { "ForceCode": 42, "HighHarm": false, "Empty": "", "Gone": null },
            "Person": [ { "@ref": "p1", "Role": ["VIC", "RPT"] }, { "@ref": "p2" } ],
            "Narrative": "a < b & \"c\"",
            "Note": { "@lang": "en\n", "#text": "hi" }
        });
        let xml =
            to_xml("CrimeRecord", &v, WriteOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            xml,
            "<CrimeRecord xmlns=\"urn:nmpp:athena:1\"><Header><ForceCode>42</ForceCode><HighHarm>false</HighHarm><Empty/></Header><Person ref=\"p1\"><Role>VIC</Role><Role>RPT</Role></Person><Person ref=\"p2\"/><Narrative>a &lt; b &amp; \"c\"</Narrative><Note lang=\"en&#10;\">hi</Note></CrimeRecord>"
        );
        let pretty = to_xml(
            "R",
            &json!({"A": {"B": "1"}, "C": ["x", "y"]}),
            WriteOptions {
                indent: 2,
                declaration: true,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pretty,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R>\n  <A>\n    <B>1</B>\n  </A>\n  <C>x</C>\n  <C>y</C>\n</R>\n"
        );
    }

    #[test]
    fn write_errors_name_the_path() {
        let err = to_xml("R", &json!({"A": {"bad name": 1}}), WriteOptions::default());
        assert!(
            matches!(err, Err(XmlError::Write { ref path, .. }) if path == "R.A.bad name"),
            "{err:?}"
        );
        let err = to_xml("R", &json!({"A": "\u{1}"}), WriteOptions::default());
        assert!(
            matches!(err, Err(XmlError::Write { ref path, .. }) if path == "R.A"),
            "{err:?}"
        );
    }

    #[test]
    fn reads_the_convention() {
        let xml = r#"<?xml version="1.0"?>
<!-- a comment -->
<CrimeRecord xmlns="urn:nmpp:athena:1">
  <Header><ForceCode>42</ForceCode><Empty/></Header>
  <Person ref="p1"><Role>VIC</Role><Role>RPT</Role></Person>
  <Narrative>a &lt; b &#38; <![CDATA[<c>]]></Narrative>
</CrimeRecord>"#;
        let (root, v) = from_xml(xml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(root, "CrimeRecord");
        assert_eq!(
            v,
            json!({
                "@xmlns": "urn:nmpp:athena:1",
                "Header": {"ForceCode": "42", "Empty": ""},
                "Person": {"@ref": "p1", "Role": ["VIC", "RPT"]},
                "Narrative": "a < b & <c>"
            })
        );
    }

    #[test]
    fn rejects_hostile_xml() {
        assert!(from_xml("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>").is_err());
        assert!(from_xml("<a><b></a>").is_err());
        assert!(from_xml("<a/><b/>").is_err());
        assert!(from_xml("").is_err());
        assert!(from_xml("<a>&bogus;</a>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(from_xml(&deep).is_err());
    }
}
