//! The mapping engine: the compiled form of a spec and how it runs.
//!
//! A run walks the rules of the root block once, in spec order, reading the source document
//! by borrowed references and building the target as a [`Node`] tree: keys borrowed from the
//! spec, leaves borrowed from the source (or the spec's constants and code tables) unless a
//! transform made a new value. Object keys appear in the order their first rule ran, which is
//! what gives XML targets their element order. The tree becomes a `serde_json::Value` once, at
//! the end ([`Node::into_value`]), or is written as XML or JSON text straight away
//! ([`crate::Mappings::render`]), so a run neither clones source values nor hashes target
//! keys more than once.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::MappingError;
use crate::input::Tree;
use crate::path::{Chain, Path, Root, Step, Target};
use crate::spec::SpecDef;
use crate::transform::Transform;
use crate::values;
use crate::xml::{Writer as XmlWriter, XmlError, XmlTree};

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
        /// `consumed` and `except` together, ordered by (length, text) for [`skip_search`].
        skip: Vec<String>,
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

impl CodeTable {
    /// The translation of `code`: small tables are scanned rather than hashed.
    pub(crate) fn get(&self, code: &str) -> Option<&Value> {
        if self.map.len() <= 16 {
            self.map
                .iter()
                .find_map(|(k, v)| same_key(k, code).then_some(v))
        } else {
            self.map.get(code)
        }
    }
}

/// The `codes = "..."` of a rule.
#[derive(Debug, Clone)]
pub(crate) enum Codes {
    /// Translate through a spec table.
    Table(Arc<CodeTable>),
    /// Check membership of an embedded code list (value kept), found when the spec loads.
    List(String, &'static crate::codelist::CodeList),
}

impl Codes {
    pub(crate) fn name(&self) -> &str {
        match self {
            Codes::Table(t) => &t.name,
            Codes::List(l, _) => l,
        }
    }
}

/// Index of a JSON:API compound document: every entity, and every link between them, found
/// once per run so that `->rel` and `<-rel` are list walks instead of searches.
struct JsonApi<'a, D> {
    entities: Vec<&'a D>,
    /// Entity addresses, sorted, with their index (the engine holds references into the
    /// document, so an entity is recognised by address without comparing ids).
    by_address: Vec<(usize, usize)>,
    /// Per entity: (reason, target entity) of its relationships, in document order.
    outbound: Vec<Vec<(&'a str, usize)>>,
    /// Per entity: (reason, source entity) of the relationships naming it.
    inbound: Vec<Vec<(&'a str, usize)>>,
}

/// Whether `key` is in `skip` (ordered by length, then text): most comparisons are decided by
/// length alone.
fn skip_search(skip: &[String], key: &str) -> bool {
    skip.binary_search_by(|s| (s.len(), s.as_str()).cmp(&(key.len(), key)))
        .is_ok()
}

/// `a == b` for the short keys documents are made of: unequal lengths decide at once, keys of
/// 8-16 bytes are compared as two overlapping 8-byte words (many keys share a prefix, like
/// `addr_town` and `addr_uprn`), shorter ones byte by byte, all without a call to `memcmp`.
#[inline]
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else if n < 8 {
        a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
    }
}

/// The 8 bytes of `b` from `at` (which the caller keeps in range) as one word.
#[inline]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn key_of<D: Tree>(v: &D) -> Option<(&str, &str)> {
    Some((v.member("type")?.as_str()?, v.member("id")?.as_str()?))
}

fn linkages<D: Tree>(rel: &D) -> impl Iterator<Item = &D> {
    let data = rel.member("data");
    let (one, many) = match data {
        Some(v) if v.is_array() => (None, v.items().map(<[D]>::iter)),
        Some(v) if v.is_object() => (Some(v), None),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

fn address<D: Tree>(v: &D) -> usize {
    std::ptr::from_ref(v) as usize
}

impl<'a, D: Tree> JsonApi<'a, D> {
    fn new(doc: &'a D) -> Self {
        let mut entities: Vec<&'a D> = Vec::new();
        if let Some(data) = doc.member("data") {
            match data.items() {
                Some(items) => entities.extend(items.iter()),
                None => entities.push(data),
            }
        }
        if let Some(items) = doc.member("included").and_then(D::items) {
            entities.extend(items.iter());
        }
        let mut keys: Vec<(&'a str, &'a str, usize)> = entities
            .iter()
            .enumerate()
            .filter_map(|(i, e)| key_of(*e).map(|(t, id)| (t, id, i)))
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
            if let Some(rels) = entity.member("relationships").and_then(D::members) {
                for (reason, rel) in rels {
                    for link in linkages(rel) {
                        if let Some(to) = key_of(link).and_then(|(t, id)| find(t, id)) {
                            outbound[from].push((reason, to));
                            inbound[to].push((reason, from));
                        }
                    }
                }
            }
        }
        let mut by_address: Vec<(usize, usize)> = entities
            .iter()
            .enumerate()
            .map(|(i, e)| (address(*e), i))
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
    fn index_of(&self, v: &D) -> Option<usize> {
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
struct Produced<'a, D> {
    value: Leaf<'a, D>,
    origin: Option<&'a D>,
}

/// The members of a target object under construction, in the order they were first written.
pub(crate) type Members<'a, D> = Vec<(Cow<'a, str>, Node<'a, D>)>;

/// The target tree a run builds: what a `serde_json::Value` would hold, with keys borrowed
/// from the spec (or the source, for `rest`) and leaves borrowed wherever no transform made a
/// new value. Keys of one object are unique (the run checks), so it converts to exactly the
/// `Value` it stands for.
#[derive(Debug)]
pub(crate) enum Node<'a, D = Value> {
    /// A value as it is (any JSON value, containers included).
    Leaf(Leaf<'a, D>),
    /// An array the run appends to.
    Array(Vec<Node<'a, D>>),
    /// An object the run writes into.
    Object(Members<'a, D>),
}

/// A leaf of the target tree: a value borrowed from the source or the spec, or one a transform
/// made (boxed, which keeps [`Node`] small: most leaves are borrowed, and tree nodes are moved
/// and stored often).
#[derive(Debug)]
pub(crate) enum Leaf<'a, D = Value> {
    /// Part of the source document.
    Source(&'a D),
    /// A constant, default or code-table value of the spec.
    Spec(&'a Value),
    Owned(Box<Value>),
}

impl<'a, D: Tree> Leaf<'a, D> {
    pub(crate) fn owned(v: Value) -> Self {
        Leaf::Owned(Box::new(v))
    }

    /// The value as a `serde_json::Value` (a source value is copied unless it is one).
    pub(crate) fn into_json(self) -> Cow<'a, Value> {
        match self {
            Leaf::Source(v) => v
                .as_value()
                .map_or_else(|| Cow::Owned(v.to_json()), Cow::Borrowed),
            Leaf::Spec(v) => Cow::Borrowed(v),
            Leaf::Owned(v) => Cow::Owned(*v),
        }
    }

    /// The value as a `serde_json::Value`, borrowed where it is one.
    pub(crate) fn json(&self) -> Cow<'_, Value> {
        match self {
            Leaf::Source(v) => v
                .as_value()
                .map_or_else(|| Cow::Owned(v.to_json()), Cow::Borrowed),
            Leaf::Spec(v) => Cow::Borrowed(v),
            Leaf::Owned(v) => Cow::Borrowed(v),
        }
    }

    fn into_owned(self) -> Value {
        self.into_json().into_owned()
    }

    /// The text of a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Leaf::Source(v) => v.as_str(),
            Leaf::Spec(v) => v.as_str(),
            Leaf::Owned(v) => v.as_str(),
        }
    }

    /// The text of a string, number or boolean ([`values::scalar_text`]).
    pub(crate) fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Leaf::Source(v) => v.scalar_text(),
            Leaf::Spec(v) => values::scalar_text(v),
            Leaf::Owned(v) => values::scalar_text(v),
        }
    }

    /// [`values::as_bool`].
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Leaf::Source(v) => v.as_bool(),
            Leaf::Spec(v) => values::as_bool(v),
            Leaf::Owned(v) => values::as_bool(v),
        }
    }

    pub(crate) fn is_boolean(&self) -> bool {
        match self {
            Leaf::Source(v) => v.is_bool(),
            Leaf::Spec(v) => v.is_boolean(),
            Leaf::Owned(v) => v.is_boolean(),
        }
    }

    /// [`values::is_absent`].
    pub(crate) fn is_absent(&self) -> bool {
        match self {
            Leaf::Source(v) => v.is_absent(),
            Leaf::Spec(v) => values::is_absent(v),
            Leaf::Owned(v) => values::is_absent(v),
        }
    }

    fn is_null(&self) -> bool {
        match self {
            Leaf::Source(v) => v.is_null(),
            Leaf::Spec(v) => v.is_null(),
            Leaf::Owned(v) => v.is_null(),
        }
    }

    fn is_object(&self) -> bool {
        match self {
            Leaf::Source(v) => v.is_object(),
            Leaf::Spec(v) => v.is_object(),
            Leaf::Owned(v) => v.is_object(),
        }
    }

    pub(crate) fn is_array(&self) -> bool {
        match self {
            Leaf::Source(v) => v.is_array(),
            Leaf::Spec(v) => v.is_array(),
            Leaf::Owned(v) => v.is_array(),
        }
    }
}

impl<'a, D> From<Cow<'a, Value>> for Leaf<'a, D> {
    fn from(v: Cow<'a, Value>) -> Self {
        match v {
            Cow::Borrowed(v) => Leaf::Spec(v),
            Cow::Owned(v) => Leaf::Owned(Box::new(v)),
        }
    }
}

impl<D: Tree> serde::Serialize for Leaf<'_, D> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Leaf::Source(v) => v.serialize(s),
            Leaf::Spec(v) => v.serialize(s),
            Leaf::Owned(v) => v.serialize(s),
        }
    }
}

/// What an opened leaf leaves behind for a moment.
static NULL: Value = Value::Null;

impl<'a, D: Tree> Node<'a, D> {
    /// A leaf borrowing spec value `v`.
    pub(crate) fn spec(v: &'a Value) -> Self {
        Node::Leaf(Leaf::Spec(v))
    }

    /// A leaf borrowing source value `v`.
    pub(crate) fn source(v: &'a D) -> Self {
        Node::Leaf(Leaf::Source(v))
    }

    /// A leaf owning `v`.
    pub(crate) fn owned(v: Value) -> Self {
        Node::Leaf(Leaf::owned(v))
    }

    /// A leaf object or array turned into a node that can be written into (its members or
    /// items become leaves); anything else unchanged.
    fn open(v: Leaf<'a, D>) -> Self {
        match v {
            Leaf::Source(v) if v.is_object() => Node::Object(
                v.members()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (Cow::Borrowed(k), Node::source(v)))
                    .collect(),
            ),
            Leaf::Source(v) if v.is_array() => Node::Array(
                v.items()
                    .unwrap_or_default()
                    .iter()
                    .map(Node::source)
                    .collect(),
            ),
            Leaf::Spec(Value::Object(map)) => Node::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::spec(v)))
                    .collect(),
            ),
            Leaf::Spec(Value::Array(items)) => Node::Array(items.iter().map(Node::spec).collect()),
            Leaf::Owned(v) => match *v {
                Value::Object(map) => Node::Object(
                    map.into_iter()
                        .map(|(k, v)| (Cow::Owned(k), Node::owned(v)))
                        .collect(),
                ),
                Value::Array(items) => Node::Array(items.into_iter().map(Node::owned).collect()),
                other => Node::owned(other),
            },
            other => Node::Leaf(other),
        }
    }

    /// Opens a leaf object or array in place.
    fn open_in_place(&mut self) {
        if let Node::Leaf(v) = self
            && (v.is_object() || v.is_array())
        {
            let v = std::mem::replace(v, Leaf::Spec(&NULL));
            *self = Node::open(v);
        }
    }

    /// The members, when this is an object (a leaf object is opened).
    fn object_mut(&mut self) -> Option<&mut Members<'a, D>> {
        self.open_in_place();
        match self {
            Node::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The items, when this is an array (a leaf array is opened).
    fn array_mut(&mut self) -> Option<&mut Vec<Node<'a, D>>> {
        self.open_in_place();
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The members, when this is an object (a leaf object is opened); else the node back.
    pub(crate) fn into_members(self) -> Result<Members<'a, D>, Self> {
        match self {
            Node::Object(members) => Ok(members),
            Node::Leaf(v) if v.is_object() => match Node::open(v) {
                Node::Object(members) => Ok(members),
                other => Err(other),
            },
            other => Err(other),
        }
    }

    /// Whether this is an object (opened or not).
    fn is_object(&self) -> bool {
        match self {
            Node::Object(_) => true,
            Node::Leaf(v) => v.is_object(),
            Node::Array(_) => false,
        }
    }

    /// The `serde_json::Value` this tree stands for.
    pub(crate) fn into_value(self) -> Value {
        match self {
            Node::Leaf(v) => v.into_owned(),
            Node::Array(items) => Value::Array(items.into_iter().map(Node::into_value).collect()),
            Node::Object(members) if members.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))) => {
                let mut map = SHAPES.with(|shapes| shapes.borrow_mut().map_for(&members));
                for (slot, (_, v)) in map.values_mut().zip(members) {
                    *slot = v.into_value();
                }
                Value::Object(map)
            }
            Node::Object(members) => {
                let mut map = Map::with_capacity(members.len());
                for (k, v) in members {
                    map.insert(k.into_owned(), v.into_value());
                }
                Value::Object(map)
            }
        }
    }
}

thread_local! {
    /// The object shapes this thread has built ([`Shapes`]).
    static SHAPES: RefCell<Shapes> = RefCell::new(Shapes::default());
}

/// At most this many shapes are kept per thread (then they are forgotten and built again).
const MAX_SHAPES: usize = 1024;

/// Objects already built, by shape (their keys in order), with every value `null`.
///
/// Building a `serde_json::Map` hashes every key (SipHash, the map's own random keys); cloning
/// one copies the keys with their hashes and hashes nothing. Specs write objects of a few
/// shapes over and over (every party of every case has the same keys), so an object whose keys
/// all borrow from the spec is made by cloning the first object of its shape and filling in
/// the values, in order. Shapes are found by the keys' addresses and confirmed by comparing
/// the keys themselves, so an address reused by other text can only miss, never mislead.
#[derive(Default)]
struct Shapes {
    maps: HashMap<Box<[usize]>, Map<String, Value>, BuildHasherDefault<AddressHasher>>,
    /// The addresses of the shape looked up (kept to not allocate per lookup).
    scratch: Vec<usize>,
}

impl Shapes {
    /// A map with the keys of `members`, in order, every value `null`.
    fn map_for<D>(&mut self, members: &Members<'_, D>) -> Map<String, Value> {
        self.scratch.clear();
        self.scratch
            .extend(members.iter().map(|(k, _)| k.as_ptr() as usize));
        if let Some(shape) = self.maps.get(self.scratch.as_slice())
            && shape.len() == members.len()
            && shape.keys().zip(members).all(|(a, (b, _))| same_key(a, b))
        {
            return shape.clone();
        }
        let mut map = Map::with_capacity(members.len());
        for (k, _) in members {
            map.insert((**k).to_owned(), Value::Null);
        }
        if self.maps.len() >= MAX_SHAPES {
            self.maps.clear();
        }
        self.maps
            .insert(self.scratch.as_slice().into(), map.clone());
        map
    }
}

/// FxHash-style hasher for [`Shapes`]' keys (addresses, which need no protection from
/// chosen collisions: they are not chosen by whoever sends a document).
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Room made for the members of an object a dotted target creates (`person.surname` creates
/// `person`): enough for most, so that it seldom grows.
const PARENT_WIDTH: usize = 8;

/// The slot of `key` in `members`.
fn slot<'m, 'a, D>(members: &'m mut Members<'a, D>, key: &str) -> Option<&'m mut Node<'a, D>> {
    members
        .iter_mut()
        .find_map(|(k, v)| same_key(k, key).then_some(v))
}

/// Serialised as the `Value` it stands for (same text as `serde_json::to_string` of it).
impl<D: Tree> serde::Serialize for Node<'_, D> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Leaf(v) => v.serialize(s),
            Node::Array(items) => s.collect_seq(items),
            Node::Object(members) => s.collect_map(members.iter().map(|(k, v)| (k.as_ref(), v))),
        }
    }
}

impl<D: Tree> XmlTree for Leaf<'_, D> {
    fn write_element<'v>(
        &'v self,
        w: &mut XmlWriter<'v>,
        name: &'v str,
        depth: usize,
    ) -> Result<(), XmlError> {
        match self {
            Leaf::Source(v) => v.write_element(w, name, depth),
            Leaf::Spec(v) => v.write_element(w, name, depth),
            Leaf::Owned(v) => v.write_element(w, name, depth),
        }
    }

    fn write_root<'v>(&'v self, w: &mut XmlWriter<'v>, root: &'v str) -> Result<(), XmlError> {
        match self {
            Leaf::Source(v) => v.write_root(w, root),
            Leaf::Spec(v) => v.write_root(w, root),
            Leaf::Owned(v) => v.write_root(w, root),
        }
    }

    fn scalar(&self) -> Option<Cow<'_, str>> {
        self.scalar_text()
    }

    fn is_null(&self) -> bool {
        Leaf::is_null(self)
    }

    fn is_array(&self) -> bool {
        Leaf::is_array(self)
    }

    fn is_nothing(&self) -> bool {
        match self {
            Leaf::Source(v) => XmlTree::is_nothing(*v),
            Leaf::Spec(v) => XmlTree::is_nothing(*v),
            Leaf::Owned(v) => XmlTree::is_nothing(&**v),
        }
    }
}

impl<D: Tree> XmlTree for Node<'_, D> {
    fn write_element<'v>(
        &'v self,
        w: &mut XmlWriter<'v>,
        name: &'v str,
        depth: usize,
    ) -> Result<(), XmlError> {
        match self {
            Node::Leaf(v) => v.write_element(w, name, depth),
            Node::Array(items) => {
                if !crate::xml::is_name(name) {
                    return Err(w.error(None, format!("{name:?} is not an XML name")));
                }
                w.array(name, items, depth)
            }
            Node::Object(members) => {
                if !crate::xml::is_name(name) {
                    return Err(w.error(None, format!("{name:?} is not an XML name")));
                }
                w.object(name, members.iter().map(|(k, v)| (k.as_ref(), v)), depth)
            }
        }
    }

    fn write_root<'v>(&'v self, w: &mut XmlWriter<'v>, root: &'v str) -> Result<(), XmlError> {
        match self {
            Node::Leaf(v) => v.write_root(w, root),
            Node::Array(_) => Err(w.error(None, "the root must be an object or a scalar".into())),
            Node::Object(members) => {
                w.object(root, members.iter().map(|(k, v)| (k.as_ref(), v)), 0)
            }
        }
    }

    fn scalar(&self) -> Option<Cow<'_, str>> {
        match self {
            Node::Leaf(v) => v.scalar_text(),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Node::Leaf(v) if v.is_null())
    }

    fn is_array(&self) -> bool {
        match self {
            Node::Leaf(v) => v.is_array(),
            Node::Array(_) => true,
            Node::Object(_) => false,
        }
    }

    fn is_nothing(&self) -> bool {
        match self {
            Node::Leaf(v) => XmlTree::is_nothing(v),
            Node::Array(items) => items.iter().all(XmlTree::is_null),
            Node::Object(_) => false,
        }
    }
}

/// The item stack of nested `for_each` rules.
#[derive(Clone, Copy)]
pub(crate) struct Frame<'a, 'f, D> {
    item: &'a D,
    alias: Option<&'f str>,
    parent: Option<&'f Frame<'a, 'f, D>>,
}

/// One run of a spec over one document.
pub(crate) struct Run<'a, D> {
    spec: &'a Spec,
    doc: &'a D,
    lets: Vec<Few<&'a D>>,
    api: Option<JsonApi<'a, D>>,
}

/// Finds the JSON Pointer of `target` (by address) inside `root`.
fn pointer_of<D: Tree>(root: &D, target: &D) -> Option<String> {
    fn walk<D: Tree>(v: &D, target: &D, path: &mut Vec<String>) -> bool {
        if std::ptr::eq(v, target) {
            return true;
        }
        if let Some(members) = v.members() {
            for (k, child) in members {
                path.push(k.replace('~', "~0").replace('/', "~1"));
                if walk(child, target, path) {
                    return true;
                }
                path.pop();
            }
        } else if let Some(items) = v.items() {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                if walk(child, target, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
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
pub(crate) fn run<D: Tree>(spec: &Spec, doc: &D) -> Result<Value, MappingError> {
    run_tree(spec, doc).map(Node::into_value)
}

/// Runs `spec` over `doc`, returning the target tree (an object).
pub(crate) fn run_tree<'a, D: Tree>(
    spec: &'a Spec,
    doc: &'a D,
) -> Result<Node<'a, D>, MappingError> {
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
    let mut out = Vec::with_capacity(spec.blocks.first().map_or(0, |b| b.width));
    run.block(0, &top, &mut out)?;
    Ok(Node::Object(out))
}

impl<'a, D: Tree> Run<'a, D> {
    /// A mapping error for `rule`; its path is the JSON Pointer of `origin` when it can be
    /// found, else `fallback`, else the rule's source expression. Built only on failure.
    #[cold]
    fn error(
        &self,
        rule: &Rule,
        origin: Option<&D>,
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
    pub(crate) fn eval(&self, path: &Path, frame: &Frame<'a, '_, D>, out: &mut Few<&'a D>) {
        for chain in &path.chains {
            let start = out.len();
            self.chain(chain, frame, out);
            if out.len() > start {
                return;
            }
        }
    }

    fn chain(&self, chain: &Chain, frame: &Frame<'a, '_, D>, out: &mut Few<&'a D>) {
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

    fn walk(&self, mut v: &'a D, mut steps: &[Step], out: &mut Few<&'a D>) {
        // Steps that lead to at most one value are followed in this loop; the others recurse.
        let (step, rest) = loop {
            let Some((step, rest)) = steps.split_first() else {
                if !v.is_absent() {
                    out.push(v);
                }
                return;
            };
            let child = match step {
                Step::Key(k) => v.member(k),
                Step::Index(i) => v.items().and_then(|a| a.get(*i)),
                Step::Token(t) => match v.items() {
                    None => v.member(t),
                    Some(items) => t.parse::<usize>().ok().and_then(|i| items.get(i)),
                },
                _ => break (step, rest),
            };
            match child {
                Some(child) => {
                    v = child;
                    steps = rest;
                }
                None => return,
            }
        };
        match step {
            Step::Key(_) | Step::Index(_) | Step::Token(_) => {}
            Step::Each => match v.items() {
                Some(items) => {
                    for child in items {
                        self.walk(child, rest, out);
                    }
                }
                None if v.is_null() => {}
                None => self.walk(v, rest, out),
            },
            Step::Filter {
                key,
                negate,
                values: wanted,
            } => {
                let keep = |item: &D| {
                    let found = item
                        .member(key)
                        .and_then(D::scalar_text)
                        .is_some_and(|t| wanted.iter().any(|w| *w == t));
                    found != *negate
                };
                if let Some(items) = v.items() {
                    for child in items {
                        if keep(child) {
                            self.walk(child, rest, out);
                        }
                    }
                } else if v.is_object() && keep(v) {
                    self.walk(v, rest, out);
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

    fn exists(&self, path: &Path, frame: &Frame<'a, '_, D>) -> bool {
        let mut found = Few::default();
        self.eval(path, frame, &mut found);
        !found.is_empty()
    }

    fn cond(&self, cond: &Cond, frame: &Frame<'a, '_, D>) -> bool {
        match cond {
            Cond::Exists(paths) => paths.iter().any(|p| self.exists(p, frame)),
            Cond::Absent(paths) => !paths.iter().any(|p| self.exists(p, frame)),
            Cond::IsTrue(path) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                found.get(0).and_then(|v| v.as_bool()) == Some(true)
            }
            Cond::OneOf(path, wanted) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                found.iter().any(|v| {
                    wanted.iter().any(|w| {
                        v.same(w)
                            || matches!((v.scalar_text(), values::scalar_text(w)), (Some(a), Some(b)) if a == b)
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
        frame: &Frame<'a, '_, D>,
        out: &mut Members<'a, D>,
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
        frame: &Frame<'a, '_, D>,
        out: &mut Members<'a, D>,
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
                    let mut members = Vec::with_capacity(width);
                    self.block(*block, &child, &mut members)?;
                    if !members.is_empty() {
                        self.put(rule, target, Node::Object(members), out)?;
                    }
                }
                Ok(())
            }
            RuleKind::Rest { object, skip, .. } => {
                let mut found = Few::default();
                self.eval(object, frame, &mut found);
                let many = found.len() > 1;
                let mut members: Members<'a, D> = Vec::new();
                for obj in found.iter().filter_map(|v| v.members()) {
                    for (k, v) in obj {
                        if v.is_absent() || skip_search(skip, k) {
                            continue;
                        }
                        let leaf = Node::source(v);
                        // A later object's member replaces an earlier one's in place.
                        match if many { slot(&mut members, k) } else { None } {
                            Some(existing) => *existing = leaf,
                            None => members.push((Cow::Borrowed(k), leaf)),
                        }
                    }
                }
                if members.is_empty() {
                    return Ok(());
                }
                self.put(rule, target, Node::Object(members), out)
            }
            // A plain copy (no transform, no code list), the commonest rule: the values found
            // go to the target as they are, with the same checks as below.
            RuleKind::From(path) if rule.transforms.is_empty() && rule.codes.is_none() => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                if found.is_empty() {
                    if let Some(default) = &rule.default {
                        return self.put(rule, target, Node::spec(default), out);
                    }
                    if rule.required {
                        return Err(self.error(
                            rule,
                            None,
                            None,
                            format!("required value is missing (nothing at `{}`)", path.text),
                        ));
                    }
                    return Ok(());
                }
                if !target.append && found.len() > 1 {
                    return Err(self.error(
                        rule,
                        found.get(1).copied(),
                        None,
                        format!(
                            "yields {} values but `{}` takes one (end `to` with `[]` to collect them)",
                            found.len(),
                            target.text
                        ),
                    ));
                }
                for v in found {
                    self.put(rule, target, Node::source(v), out)?;
                }
                Ok(())
            }
            _ => {
                let mut produced = self.produce(rule, frame)?;
                if produced.is_empty()
                    && let Some(default) = &rule.default
                {
                    produced.push(Produced {
                        value: Leaf::Spec(default),
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
                    self.put(rule, target, Node::Leaf(p.value), out)?;
                }
                Ok(())
            }
        }
    }

    fn alternative(
        &self,
        alt: &'a Rule,
        frame: &Frame<'a, '_, D>,
    ) -> Result<Few<Produced<'a, D>>, MappingError> {
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
        frame: &Frame<'a, '_, D>,
    ) -> Result<Few<Produced<'a, D>>, MappingError> {
        let mut produced: Few<Produced<'a, D>> = match &rule.kind {
            RuleKind::From(path) => {
                let mut found = Few::default();
                self.eval(path, frame, &mut found);
                let mut produced = Few::default();
                for v in found {
                    produced.push(Produced {
                        value: Leaf::Source(v),
                        origin: Some(v),
                    });
                }
                produced
            }
            RuleKind::Const(v) => {
                let mut one = Few::default();
                one.push(Produced {
                    value: Leaf::Spec(v),
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
            let mut value = std::mem::replace(&mut p.value, Leaf::Spec(&NULL));
            for t in &rule.transforms {
                value = t
                    .apply(value, self, frame)
                    .map_err(|m| self.error(rule, origin, None, m))?;
            }
            if !value.is_absent()
                && let Some(codes) = &rule.codes
            {
                match self.translate(codes, value) {
                    Ok(Some(v)) => value = v,
                    Ok(None) => value = Leaf::Spec(&NULL),
                    Err(m) => return Err(self.error(rule, origin, None, m)),
                }
            }
            dropped |= value.is_absent();
            p.value = value;
        }
        if dropped {
            produced.retain(|p| !p.value.is_absent());
        }
        Ok(produced)
    }

    fn translate(
        &self,
        codes: &'a Codes,
        value: Leaf<'a, D>,
    ) -> Result<Option<Leaf<'a, D>>, String> {
        let Some(code) = value.scalar_text() else {
            return Err(format!(
                "code list `{}` needs a code, found {}",
                codes.name(),
                value_text(&value.json())
            ));
        };
        match codes {
            Codes::List(list, codes) => {
                if codes.contains(&code) {
                    Ok(Some(value))
                } else {
                    Err(format!(
                        "code {code:?} is not in code list {list} ({})",
                        codes.name
                    ))
                }
            }
            Codes::Table(table) => match table.get(&code) {
                Some(v) => Ok(Some(Leaf::Spec(v))),
                None => match &table.unknown {
                    Unknown::Error => Err(format!(
                        "code {code:?} is not in code list `{}`",
                        table.name
                    )),
                    Unknown::Keep => Ok(Some(value)),
                    Unknown::Omit => Ok(None),
                    Unknown::Default(d) => Ok(Some(Leaf::Spec(d))),
                },
            },
        }
    }

    /// Writes `value` at `target` inside `out`.
    fn put(
        &self,
        rule: &Rule,
        target: &'a Target,
        value: Node<'a, D>,
        out: &mut Members<'a, D>,
    ) -> Result<(), MappingError> {
        let fail = |m: String| self.error(rule, None, Some(&target.text), m);
        let Some((last, parents)) = target.keys.split_last() else {
            return Ok(());
        };
        let mut members = out;
        for key in parents {
            let index = match members.iter().position(|(k, _)| same_key(k, key)) {
                Some(i) => i,
                None => {
                    members.push((
                        Cow::Borrowed(key.as_str()),
                        Node::Object(Vec::with_capacity(PARENT_WIDTH)),
                    ));
                    members.len() - 1
                }
            };
            members = match members[index].1.object_mut() {
                Some(m) => m,
                None => {
                    return Err(fail(format!(
                        "`{key}` of `{}` is already a value, not an object",
                        target.text
                    )));
                }
            };
        }
        let existing = members.iter().position(|(k, _)| same_key(k, last));
        if target.append {
            let index = existing.unwrap_or_else(|| {
                members.push((Cow::Borrowed(last.as_str()), Node::Array(Vec::new())));
                members.len() - 1
            });
            return match members[index].1.array_mut() {
                Some(items) => {
                    items.push(value);
                    Ok(())
                }
                None => Err(fail(format!(
                    "`{}` is already a value, not a list",
                    target.text
                ))),
            };
        }
        let Some(index) = existing else {
            members.push((Cow::Borrowed(last.as_str()), value));
            return Ok(());
        };
        let slot = &mut members[index].1;
        if !(slot.is_object() && value.is_object()) {
            return Err(fail(format!(
                "`{}` is already written by an earlier rule",
                target.text
            )));
        }
        let (Some(existing), Ok(new)) = (slot.object_mut(), value.into_members()) else {
            return Ok(());
        };
        for (k, v) in new {
            if existing.iter().any(|(e, _)| same_key(e, &k)) {
                return Err(fail(format!("`{}.{k}` is written twice", target.text)));
            }
            existing.push((k, v));
        }
        Ok(())
    }

    /// 1-based position of `value` among the values of `path` (for `position_in`).
    pub(crate) fn position_in(
        &self,
        path: &Path,
        frame: &Frame<'a, '_, D>,
        value: &Value,
    ) -> Option<usize> {
        let mut found = Few::default();
        self.eval(path, frame, &mut found);
        found.iter().position(|v| v.same(value)).map(|i| i + 1)
    }
}
