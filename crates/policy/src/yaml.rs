//! A located YAML tree and a serde deserializer over it.
//!
//! `saphyr-parser` turns the text into events with positions; we build a small tree from them
//! that remembers where every node starts, refusing what a policy never needs and an attacker
//! could abuse: anchors and aliases (no "billion laughs"), tags, duplicate keys, non-string keys,
//! more than one document, deep nesting and huge inputs. Plain scalars are resolved with the YAML
//! 1.2 core schema. The deserializer attaches the innermost node's position and path to every
//! serde error, so "unknown field" points at the key and "missing field" at the mapping.

use crate::problem::{Problem, Rule};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// The largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// The deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 32;
/// The most nodes (scalars, sequences, mappings) accepted.
pub const MAX_NODES: usize = 100_000;

/// Where a node starts: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

/// One node of the document.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub mark: Mark,
    /// Where the node sits: the child position at each level (item index in a sequence, entry
    /// index in a mapping; a key shares its value's position). The display path is rendered
    /// from the root on demand, so a document of long keys cannot make paths quadratic.
    pub pos: Box<[u32]>,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A scalar, with whether it was written plain (unquoted, not a block scalar): only plain
    /// scalars are resolved to null, booleans and numbers.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys are string scalars (checked while building).
    Map(Vec<(Node, Node)>),
}

/// One path step when looking a node up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Node {
    fn child(&self, seg: Seg<'_>) -> Option<&Node> {
        match (&self.kind, seg) {
            (Kind::Map(entries), Seg::Key(k)) => entries
                .iter()
                .find(|(key, _)| key.scalar() == Some(k))
                .map(|(_, v)| v),
            (Kind::Seq(items), Seg::Index(i)) => items.get(i),
            _ => None,
        }
    }

    /// The key node of `key` in this mapping.
    fn key_node(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// The deepest node along `segs`: a missing optional field is reported at its parent.
    pub fn lookup(&self, segs: &[Seg<'_>]) -> &Node {
        let mut node = self;
        for seg in segs {
            match node.child(*seg) {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }

    /// Like [`Node::lookup`], but for a key whose value is a whole structure (a misplaced field),
    /// report the key itself.
    pub fn lookup_key(&self, segs: &[Seg<'_>], key: &str) -> &Node {
        let parent = self.lookup(segs);
        parent.key_node(key).unwrap_or(parent)
    }

    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A problem located at `node`, a node of this tree (the root).
    pub fn problem(&self, node: &Node, rule: Rule, message: impl Into<String>) -> Problem {
        Problem {
            path: self.display_path(&node.pos),
            line: node.mark.line,
            column: node.mark.column,
            rule,
            message: message.into(),
        }
    }

    /// Render a position as `services[driver].env.PATH` (empty for the root). List items that
    /// are mappings with a scalar `name` are shown by name, others by index; long labels are
    /// abbreviated.
    pub fn display_path(&self, pos: &[u32]) -> String {
        let mut out = String::new();
        let mut node = self;
        for &step in pos {
            let step = step as usize;
            match &node.kind {
                Kind::Seq(items) => {
                    let Some(item) = items.get(step) else { break };
                    let label = item
                        .child(Seg::Key("name"))
                        .and_then(Node::scalar)
                        .filter(|n| !n.is_empty() && !n.contains(['[', ']', '\n']))
                        .map_or_else(|| step.to_string(), abbreviate);
                    out.push_str(&format!("[{label}]"));
                    node = item;
                }
                Kind::Map(entries) => {
                    let Some((key, value)) = entries.get(step) else {
                        break;
                    };
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&abbreviate(key.scalar().unwrap_or_default()));
                    node = value;
                }
                Kind::Scalar { .. } => break,
            }
        }
        out
    }

    /// The node as JSON, resolving plain scalars with the core schema (for the schema test and
    /// for tools that want the document as data).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, plain } => match (plain, resolve_plain(text)) {
                (false, _) | (true, Plain::Str) => Value::String(text.clone()),
                (true, Plain::Null) => Value::Null,
                (true, Plain::Bool(b)) => Value::Bool(b),
                (true, Plain::Int(i)) => Value::from(i),
                (true, Plain::Float(f)) => serde_json::Number::from_f64(f)
                    .map_or(Value::String(text.clone()), Value::Number),
            },
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar().unwrap_or_default().to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn mark_of(m: saphyr_parser::Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// Parse `text` into a located tree, refusing what the policy language does not use.
pub(crate) fn parse(text: &str) -> Result<Node, Problem> {
    let at = |mark: Mark, rule: Rule, message: String| Problem {
        path: String::new(),
        line: mark.line,
        column: mark.column,
        rule,
        message,
    };
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(at(
            Mark { line: 1, column: 1 },
            Rule::YamlLimits,
            format!(
                "document is {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                text.len()
            ),
        ));
    }

    enum Open {
        Seq(Mark, Vec<Node>),
        Map(Mark, Vec<(Node, Node)>, Option<Node>),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;

    for item in Parser::new_from_str(text) {
        let (event, span) =
            item.map_err(|e| at(mark_of(*e.marker()), Rule::YamlSyntax, e.info().to_owned()))?;
        let mark = mark_of(span.start);
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(at(
                        mark,
                        Rule::YamlSyntax,
                        "a policy is exactly one YAML document".into(),
                    ));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(at(mark, Rule::YamlAlias, "aliases are not accepted".into()));
            }
            Event::Scalar(value, style, anchor, tag) => {
                refuse_anchor_tag(anchor, tag.is_some(), mark).map_err(|(r, m)| at(mark, r, m))?;
                Node {
                    mark,
                    pos: Box::default(),
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_anchor_tag(anchor, tag.is_some(), mark).map_err(|(r, m)| at(mark, r, m))?;
                if stack.len() >= MAX_DEPTH {
                    return Err(at(
                        mark,
                        Rule::YamlLimits,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(at(
                        mark,
                        Rule::YamlLimits,
                        format!("more than {MAX_NODES} nodes"),
                    ));
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Open::Seq(mark, Vec::new()));
                } else {
                    stack.push(Open::Map(mark, Vec::new(), None));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq(mark, items)) => Node {
                    mark,
                    pos: Box::default(),
                    kind: Kind::Seq(items),
                },
                Some(Open::Map(mark, entries, _)) => Node {
                    mark,
                    pos: Box::default(),
                    kind: Kind::Map(entries),
                },
                None => {
                    return Err(at(
                        mark,
                        Rule::YamlSyntax,
                        "unbalanced collection end".into(),
                    ));
                }
            },
        };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(at(
                mark,
                Rule::YamlLimits,
                format!("more than {MAX_NODES} nodes"),
            ));
        }
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let Some(key) = node.scalar() else {
                        return Err(at(
                            node.mark,
                            Rule::KeyType,
                            "mapping keys must be plain strings".into(),
                        ));
                    };
                    if entries.iter().any(|(k, _)| k.scalar() == Some(key)) {
                        return Err(at(
                            node.mark,
                            Rule::DuplicateKey,
                            format!("key `{key}` appears twice in this mapping"),
                        ));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }

    let mut root = root.ok_or_else(|| {
        at(
            Mark { line: 1, column: 1 },
            Rule::YamlSyntax,
            "the document is empty".into(),
        )
    })?;
    assign_positions(&mut root, &[]);
    Ok(root)
}

fn refuse_anchor_tag(anchor: usize, tagged: bool, _mark: Mark) -> Result<(), (Rule, String)> {
    if anchor != 0 {
        return Err((Rule::YamlAlias, "anchors are not accepted".into()));
    }
    if tagged {
        return Err((Rule::YamlTag, "YAML tags are not accepted".into()));
    }
    Ok(())
}

/// Give every node its position below the root.
fn assign_positions(node: &mut Node, pos: &[u32]) {
    let child = |i: usize| -> Box<[u32]> {
        let mut p = pos.to_vec();
        p.push(u32::try_from(i).unwrap_or(u32::MAX));
        p.into_boxed_slice()
    };
    match &mut node.kind {
        Kind::Scalar { .. } => {}
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                assign_positions(item, &child(i));
            }
        }
        Kind::Map(entries) => {
            for (i, (key, value)) in entries.iter_mut().enumerate() {
                let p = child(i);
                key.pos = p.clone();
                assign_positions(value, &p);
            }
        }
    }
    node.pos = pos.into();
}

fn abbreviate(label: &str) -> String {
    const MAX: usize = 40;
    if label.chars().count() > MAX {
        format!("{}…", label.chars().take(MAX).collect::<String>())
    } else {
        label.to_owned()
    }
}

/// A plain scalar resolved with the YAML 1.2 core schema.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

fn resolve_plain(s: &str) -> Plain {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).map_or(Plain::Str, Plain::Int);
    }
    if let Some(oct) = s.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).map_or(Plain::Str, Plain::Int);
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_or(Plain::Str, Plain::Int);
    }
    let float_chars = !digits.is_empty()
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if float_chars && let Ok(f) = s.parse::<f64>() {
        return Plain::Float(f);
    }
    Plain::Str
}

// ----- the deserializer -----

/// A serde error with the position and path of the node it arose at.
#[derive(Debug)]
pub(crate) struct DeError {
    rule: Rule,
    message: String,
    at: Option<(Mark, Box<[u32]>)>,
}

impl DeError {
    pub fn into_problem(self, root: &Node) -> Problem {
        let (mark, pos) = self.at.unwrap_or_default();
        Problem {
            path: root.display_path(&pos),
            line: mark.line.max(1),
            column: mark.column.max(1),
            rule: self.rule,
            message: self.message,
        }
    }

    fn located(mut self, node: &Node) -> Self {
        if self.at.is_none() {
            self.at = Some((node.mark, node.pos.clone()));
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            rule: Rule::Type,
            message: msg.to_string(),
            at: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            rule: Rule::UnknownField,
            message: format!(
                "unknown field `{field}`; expected one of {}",
                one_of(expected)
            ),
            at: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            rule: Rule::MissingField,
            message: format!("missing field `{field}`"),
            at: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            rule: Rule::UnknownVariant,
            message: format!(
                "unknown value `{variant}`; expected one of {}",
                one_of(expected)
            ),
            at: None,
        }
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError {
            rule: Rule::DuplicateKey,
            message: format!("key `{field}` appears twice"),
            at: None,
        }
    }
}

fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deserialize a `T` from the tree; the error is located at the innermost node that failed.
pub(crate) fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T, Problem> {
    T::deserialize(node).map_err(|e| e.into_problem(node))
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.kind {
            Kind::Scalar { text, plain: false } => visitor.visit_borrowed_str(text),
            Kind::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(i) => visitor.visit_i64(i),
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::Str => visitor.visit_borrowed_str(text),
            },
            Kind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            Kind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.located(self))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Bool(b) => visitor.visit_bool(b),
                _ => Err(self.invalid(&visitor)),
            },
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Int(i) => visitor.visit_i64(i),
                _ => Err(self.invalid(&visitor)),
            },
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Int(i) => visitor.visit_i64(i),
                Plain::Float(f) => visitor.visit_f64(f),
                _ => Err(self.invalid(&visitor)),
            },
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any scalar reads as a string (`version: 3` into a string field is "3"), so that hex
        // strings that happen to look like numbers need no quotes.
        match &self.kind {
            Kind::Scalar { text, plain } if !(*plain && resolve_plain(text) == Plain::Null) => {
                visitor.visit_borrowed_str(text)
            }
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { text, plain: true } if resolve_plain(text) == Plain::Null => {
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { text, plain: true } if resolve_plain(text) == Plain::Null => {
                visitor.visit_unit()
            }
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.located(self))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
            }),
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
            _ => Err(self.invalid(&visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.kind {
            Kind::Scalar { .. } => visitor.visit_enum(EnumAccess {
                tag: self,
                value: None,
            }),
            Kind::Map(entries) if entries.len() == 1 => {
                let (tag, value) = &entries[0];
                visitor.visit_enum(EnumAccess {
                    tag,
                    value: Some(value),
                })
            }
            _ => Err(de::Error::invalid_type(self.unexpected(), &visitor)),
        }
        .map_err(|e| e.located(self))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }
}

impl Node {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.kind {
            Kind::Scalar { text, plain: false } => de::Unexpected::Str(text),
            Kind::Scalar { text, plain: true } => match resolve_plain(text) {
                Plain::Null => de::Unexpected::Unit,
                Plain::Bool(b) => de::Unexpected::Bool(b),
                Plain::Int(i) => de::Unexpected::Signed(i),
                Plain::Float(f) => de::Unexpected::Float(f),
                Plain::Str => de::Unexpected::Str(text),
            },
            Kind::Seq(_) => de::Unexpected::Seq,
            Kind::Map(_) => de::Unexpected::Map,
        }
    }

    fn invalid<'de, V: Visitor<'de>>(&self, visitor: &V) -> DeError {
        de::Error::invalid_type(self.unexpected(), visitor)
    }
}

struct SeqAccess<'de> {
    items: std::slice::Iter<'de, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(node)
                .map(Some)
                .map_err(|e| e.located(node)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'de> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    value: Option<&'de Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key).map(Some).map_err(|e| e.located(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(node) => seed.deserialize(node).map_err(|e| e.located(node)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumAccess<'de> {
    tag: &'de Node,
    value: Option<&'de Node>,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = DeError;
    type Variant = VariantAccess<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let tag = self.tag;
        let variant = seed.deserialize(tag).map_err(|e| e.located(tag))?;
        Ok((
            variant,
            VariantAccess {
                tag,
                value: self.value,
            },
        ))
    }
}

struct VariantAccess<'de> {
    tag: &'de Node,
    value: Option<&'de Node>,
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(node) => serde::Deserialize::deserialize(node),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(node) => seed.deserialize(node),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a mapping with one key",
            ))
            .map_err(|e: DeError| e.located(self.tag)),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => de::Deserializer::deserialize_seq(node, visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &visitor,
            ))
            .map_err(|e: DeError| e.located(self.tag)),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => de::Deserializer::deserialize_map(node, visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &visitor,
            ))
            .map_err(|e: DeError| e.located(self.tag)),
        }
    }
}

impl<'de> IntoDeserializer<'de, DeError> for &'de Node {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
        count: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        value: u32,
    }

    fn problem(text: &str) -> Problem {
        match parse(text) {
            Err(p) => p,
            Ok(tree) => match from_node::<Doc>(&tree) {
                Err(p) => p,
                Ok(doc) => panic!("expected a problem, parsed {doc:?}"),
            },
        }
    }

    #[test]
    fn parses_and_paths_items_by_name() {
        let tree = parse("name: x\nitems:\n  - name: a\n    value: 1\n  - value: 2\n    name: 7\n")
            .unwrap();
        let doc: Doc = from_node(&tree).unwrap();
        assert_eq!(doc.items.len(), 2);
        assert_eq!(doc.items[1].name, "7");
        let item = tree.lookup(&[Seg::Key("items"), Seg::Index(0), Seg::Key("value")]);
        assert_eq!(tree.display_path(&item.pos), "items[a].value");
        assert_eq!((item.mark.line, item.mark.column), (4, 12));
        let missing = tree.lookup(&[Seg::Key("items"), Seg::Index(1), Seg::Key("nope")]);
        assert_eq!(tree.display_path(&missing.pos), "items[7]");
    }

    #[rstest]
    #[case::unknown_field_at_key(
        "name: x\nitems:\n  - name: a\n    valeu: 1\n",
        Rule::UnknownField,
        "items[a].valeu",
        4,
        5
    )]
    #[case::missing_field_at_mapping(
        "name: x\nitems:\n  - name: a\n",
        Rule::MissingField,
        "items[a]",
        3,
        5
    )]
    #[case::wrong_type("name: x\ncount: many\n", Rule::Type, "count", 2, 8)]
    #[case::out_of_range("name: x\ncount: 70000\n", Rule::Type, "count", 2, 8)]
    #[case::quoted_number_is_a_string("name: x\ncount: \"3\"\n", Rule::Type, "count", 2, 8)]
    #[case::duplicate_key("name: x\nname: y\n", Rule::DuplicateKey, "", 2, 1)]
    #[case::alias("name: &a x\ncount: *a\n", Rule::YamlAlias, "", 1, 7)]
    #[case::tag("name: !!str x\n", Rule::YamlTag, "", 1, 7)]
    #[case::complex_key("? [a]\n: b\n", Rule::KeyType, "", 1, 3)]
    #[case::syntax("name: [x\n", Rule::YamlSyntax, "", 2, 1)]
    #[case::two_documents("name: x\n---\nname: y\n", Rule::YamlSyntax, "", 2, 1)]
    #[case::empty("", Rule::YamlSyntax, "", 1, 1)]
    #[case::not_a_mapping("- a\n", Rule::Type, "", 1, 1)]
    fn located_problems(
        #[case] text: &str,
        #[case] rule: Rule,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
    ) {
        let p = problem(text);
        assert_eq!(
            (p.rule, p.path.as_str(), p.line, p.column),
            (rule, path, line, column),
            "{p}"
        );
    }

    #[test]
    fn nesting_is_limited() {
        let text = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(problem(&text).rule, Rule::YamlLimits);
    }

    #[rstest]
    #[case::null("~", Plain::Null)]
    #[case::bool("True", Plain::Bool(true))]
    #[case::int("-12", Plain::Int(-12))]
    #[case::hex("0x1f", Plain::Int(31))]
    #[case::octal("0o17", Plain::Int(15))]
    #[case::leading_zero_is_decimal("0600", Plain::Int(600))]
    #[case::float("1.5e3", Plain::Float(1500.0))]
    #[case::hexdigits_are_text("3a9f", Plain::Str)]
    #[case::text("sgx", Plain::Str)]
    fn core_schema(#[case] text: &str, #[case] expected: Plain) {
        assert_eq!(resolve_plain(text), expected);
    }

    #[test]
    fn to_json_resolves_plain_scalars_only() {
        let tree = parse("a: 1\nb: \"1\"\nc: [true, ~]\n").unwrap();
        assert_eq!(
            tree.to_json(),
            serde_json::json!({"a": 1, "b": "1", "c": [true, null]})
        );
    }
}
