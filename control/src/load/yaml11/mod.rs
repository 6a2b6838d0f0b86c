//! Plain scalars as kubectl reads them. `kubectl apply` turns YAML into JSON
//! with sigs.k8s.io/yaml (`YAMLToJSON`), which parses with a fork of go-yaml
//! v2: YAML 1.1, where an unquoted `yes`, `no`, `on`, `off`, `y` or `n` is a
//! boolean and `1_000`, `017` or `0b101` a number (goyaml.v2/resolve.go).
//! serde_yaml follows YAML 1.2 and reads those as strings, so
//! `matchLabels: {enabled: yes}` would select on the string `yes` here while
//! the API server refuses the object ("cannot unmarshal bool into Go struct
//! field ... of type string").
//!
//! The loader parses each file a second time with an event parser that tells
//! plain scalars from quoted ones, resolves every plain, untagged scalar as
//! go-yaml v2 does and writes the result into serde_yaml's tree. Mapping keys
//! become strings as `YAMLToJSON` makes them (`yes:` is the key `true`). A
//! field that wants a string then refuses a boolean or a number, as the API
//! server does, and [`Originals`] keeps the text as written so the error can
//! say what to quote.
//!
//! One leniency: a value that is just `y`, `Y`, `n` or `N` stays a string,
//! with a warning. go-yaml v2 is alone in reading those as booleans (PyYAML
//! and go-yaml v3 do not), and the upstream NetworkPolicy suite names its
//! namespaces `x`, `y` and `z`: refusing `namespace: y` would refuse the
//! manifests most often written for it, while the cluster would hold no
//! other value (it refuses the object; it never reads it as `true`). Keys
//! get no such leniency: there the cluster does hold `true`.
use std::collections::HashMap;
use std::rc::Rc;

use granit_parser::{Event, Parser, ScalarStyle};
use serde_yaml::Value;

use super::FieldError;

mod resolve;
use resolve::{Resolved, key_string, resolve};

/// A document's shape as the event parser saw it: just enough to find the
/// plain scalars in serde_yaml's tree.
#[derive(Debug, Clone)]
pub(super) enum Node {
    /// A plain scalar without a tag, as written.
    Plain(String),
    /// Any other scalar (quoted, block, tagged), or an unknown alias.
    Other,
    /// Shared, so that an alias costs a pointer: a document of nested
    /// aliases (a "billion laughs") stays the size it is written in.
    Seq(Rc<Vec<Node>>),
    Map(Rc<Vec<(Node, Node)>>),
}

pub use palisade_api::yaml_depth::TooDeep;

/// Why a file could not be read as YAML.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
    #[error(transparent)]
    Syntax(#[from] serde_yaml::Error),
}

/// The documents of `text`, in order, each with aliases expanded as
/// serde_yaml expands them. Stops at the first syntax error (serde_yaml
/// reports it); the documents before it are returned. A document nested
/// too deep for serde_yaml is an error (`palisade_api::yaml_depth`):
/// serde_yaml must not see the file.
pub(super) fn documents(text: &str) -> Result<Vec<Node>, TooDeep> {
    let mut depth = palisade_api::yaml_depth::DepthGuard::default();
    struct Open {
        map: bool,
        anchor: usize,
        items: Vec<Node>,
    }
    let mut docs = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    for event in Parser::new_from_str(text) {
        depth.follow(&event)?;
        let Ok((event, _)) = event else { break };
        let (node, anchor) = match event {
            Event::DocumentStart(..) => {
                anchors.clear();
                open.clear();
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let node = if style == ScalarStyle::Plain && tag.is_none() {
                    Node::Plain(value.into_owned())
                } else {
                    Node::Other
                };
                (node, anchor)
            }
            Event::Alias(id) => (anchors.get(&id).cloned().unwrap_or(Node::Other), 0),
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                let map = matches!(event, Event::MappingStart(..));
                open.push(Open {
                    map,
                    anchor,
                    items: Vec::new(),
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(done) = open.pop() else { break };
                let node = if done.map {
                    let mut items = done.items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        pairs.push((k, v));
                    }
                    Node::Map(Rc::new(pairs))
                } else {
                    Node::Seq(Rc::new(done.items))
                };
                (node, done.anchor)
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match open.last_mut() {
            Some(parent) => parent.items.push(node),
            None => docs.push(node),
        }
    }
    Ok(docs)
}

/// Unquoted scalars that kubectl reads as a boolean or a number, by the
/// field path serde_path_to_error gives (`spec.podSelector.matchLabels.x`),
/// with the text as written.
#[derive(Debug, Default)]
pub(super) struct Originals(HashMap<String, String>);

impl Originals {
    /// `message` for an error at `field`, with what to quote when the field
    /// held such a scalar.
    pub(super) fn explain(&self, field: &str, message: String) -> String {
        match self.0.get(field) {
            Some(text) => format!(
                "{message} (kubectl reads YAML 1.1, where the unquoted `{text}` is not a string; write \"{text}\" for a string)"
            ),
            None => message,
        }
    }
}

/// What [`apply`] found besides the values it rewrote.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// What kubectl refuses outright (a key with no JSON form).
    pub errors: Vec<FieldError>,
    /// Values kept as strings although kubectl reads them as booleans: the
    /// single letters `y` and `n` (see the module documentation).
    pub warnings: Vec<FieldError>,
}

/// Writes what go-yaml v2 makes of each plain scalar of `node` into `value`,
/// the same document as serde_yaml read it. Where the two trees disagree in
/// shape, that part is left alone.
pub(super) fn apply(value: &mut Value, node: &Node, originals: &mut Originals) -> Applied {
    let mut applied = Applied::default();
    walk(value, node, "", originals, &mut applied);
    applied
}

/// The single-letter booleans of go-yaml v2, kept as strings in values.
fn single_letter(text: &str) -> bool {
    matches!(text, "y" | "Y" | "n" | "N")
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    value: &mut Value,
    node: &Node,
    path: &str,
    originals: &mut Originals,
    applied: &mut Applied,
) {
    match (value, node) {
        (Value::Tagged(t), _) => walk(&mut t.value, node, path, originals, applied),
        (Value::String(s), Node::Plain(text)) if single_letter(text) && s == text => {
            applied.warnings.push(FieldError::new(
                path,
                format!("kubectl reads the unquoted `{text}` as a boolean (YAML 1.1), which the API server refuses where a string belongs; read here as the string \"{text}\": quote it"),
            ));
        }
        (value, Node::Plain(text)) if agrees(value, node) => {
            let resolved = resolve(text);
            *value = match resolved {
                Resolved::Null => Value::Null,
                Resolved::Bool(b) => Value::Bool(b),
                Resolved::Int(i) => Value::Number(i.into()),
                Resolved::Uint(u) => Value::Number(u.into()),
                Resolved::Float(f) => Value::Number(f.into()),
                Resolved::Str => Value::String(text.clone()),
            };
            if !matches!(resolved, Resolved::Null | Resolved::Str) {
                originals.0.insert(path.to_string(), text.clone());
            }
        }
        (Value::Sequence(items), Node::Seq(nodes)) if items.len() == nodes.len() => {
            for (i, (item, node)) in items.iter_mut().zip(nodes.iter()).enumerate() {
                walk(item, node, &format!("{path}[{i}]"), originals, applied);
            }
        }
        (Value::Mapping(map), Node::Map(pairs))
            if map.len() == pairs.len()
                && map.keys().zip(pairs.iter()).all(|(k, (n, _))| agrees(k, n)) =>
        {
            let old = std::mem::take(map);
            for ((key, mut item), (key_node, item_node)) in old.into_iter().zip(pairs.iter()) {
                let key = match (&key, key_node) {
                    (Value::String(_) | Value::Bool(_) | Value::Number(_), Node::Plain(text)) => {
                        match key_string(text) {
                            Some(k) => Value::String(k),
                            None => {
                                applied.errors.push(FieldError::new(
                                    path,
                                    format!("the unquoted key `{text}` is null, which kubectl cannot turn into JSON (unsupported map key); quote it"),
                                ));
                                key
                            }
                        }
                    }
                    _ => key,
                };
                if matches!(key_node, Node::Plain(t) if t == "<<") {
                    // A merge key: its mappings' entries land at this level.
                    match (&mut item, item_node) {
                        (Value::Sequence(items), Node::Seq(nodes))
                            if items.len() == nodes.len() =>
                        {
                            for (item, node) in items.iter_mut().zip(nodes.iter()) {
                                walk(item, node, path, originals, applied);
                            }
                        }
                        _ => walk(&mut item, item_node, path, originals, applied),
                    }
                    merge(map, item, path, applied);
                    continue;
                }
                let child = match &key {
                    Value::String(k) => join_key(path, k),
                    _ => join_key(path, "?"),
                };
                walk(&mut item, item_node, &child, originals, applied);
                map.insert(key, item);
            }
        }
        _ => {}
    }
}

/// Whether serde_yaml's scalar `value` is what the event parser saw as
/// `node`, so that the two trees are walked in step: a plain scalar must
/// read back as that very value in serde_yaml. Other scalars are not
/// compared.
fn agrees(value: &Value, node: &Node) -> bool {
    match (value, node) {
        (Value::String(s), Node::Plain(text)) => s == text,
        (Value::Null | Value::Bool(_) | Value::Number(_), Node::Plain(text)) => {
            serde_yaml::from_str::<Value>(text).is_ok_and(|v| v == *value)
        }
        (_, Node::Plain(_)) => false,
        _ => true,
    }
}

/// go-yaml v2's merge key (decode.go, `merge`), where it stands: the
/// entries of a mapping, or of each mapping of a list (the earlier ones
/// winning), replace those written before the `<<`; keys written after it
/// replace them in turn.
fn merge(map: &mut serde_yaml::Mapping, value: Value, path: &str, applied: &mut Applied) {
    let maps = match value {
        Value::Mapping(m) => vec![m],
        Value::Sequence(items) => {
            let mut maps = Vec::new();
            for item in items.into_iter().rev() {
                match item {
                    Value::Mapping(m) => maps.push(m),
                    _ => {
                        applied.errors.push(merge_error(path));
                        return;
                    }
                }
            }
            maps
        }
        _ => {
            applied.errors.push(merge_error(path));
            return;
        }
    };
    for m in maps {
        for (k, v) in m {
            map.insert(k, v);
        }
    }
}

fn merge_error(path: &str) -> FieldError {
    FieldError::new(
        path,
        "the merge key `<<` needs a mapping or a list of mappings as its value (go-yaml, as kubectl reads YAML: \"map merge requires map or sequence of maps as the value\")",
    )
}

/// The documents of `text` as kubectl reads them: serde_yaml's tree with
/// every plain scalar resolved as go-yaml v2 resolves it (see [`apply`]),
/// the single letters `y` and `n` kept as strings as the loader keeps them.
/// The error carries the index of the document that is not valid YAML.
pub(crate) fn read_documents(text: &str) -> Result<Vec<Value>, (usize, ReadError)> {
    use serde::Deserialize;
    let shapes = documents(text).map_err(|deep| (deep.document, deep.into()))?;
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut value = Value::deserialize(doc).map_err(|e| (index, e.into()))?;
        if let Some(shape) = shapes.get(index) {
            apply(&mut value, shape, &mut Originals::default());
        }
        out.push(value);
    }
    Ok(out)
}

/// `value` as YAML that kubectl (and this loader) reads back as the same
/// value. serde_yaml writes YAML 1.2 and leaves `yes`, `on`, `1_000`, `y`
/// unquoted, which go-yaml v2 would read as a boolean or a number: those
/// strings are single-quoted.
pub(crate) fn to_string(value: &Value) -> Result<String, serde_yaml::Error> {
    let text = serde_yaml::to_string(value)?;
    let mut quote = Vec::new();
    for event in Parser::new_from_str(&text) {
        let Ok((Event::Scalar(v, ScalarStyle::Plain, _, None), span)) = event else {
            continue;
        };
        let misread = !matches!(resolve(&v), Resolved::Str | Resolved::Null)
            && matches!(serde_yaml::from_str::<Value>(&v), Ok(Value::String(_)));
        if misread && let Some(range) = span.byte_range() {
            quote.push(range);
        }
    }
    let mut out = text;
    for range in quote.into_iter().rev() {
        let Some(plain) = out.get(range.clone()) else {
            continue;
        };
        let quoted = format!("'{}'", plain.replace('\'', "''"));
        out.replace_range(range, &quoted);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_become_what_kubectl_reads() {
        let text = "a: yes\nb: 'yes'\nc: [on, \"on\", !!str on]\nd: &x {y: 1_0}\ne: *x\n";
        let mut value: Value = serde_yaml::from_str(text).unwrap();
        let docs = documents(text).unwrap();
        let mut originals = Originals::default();
        let applied = apply(&mut value, &docs[0], &mut originals);
        assert!(applied.errors.is_empty() && applied.warnings.is_empty());
        let want: Value = serde_yaml::from_str(
            "a: true\nb: 'yes'\nc: [true, 'on', 'on']\nd: {'true': 10}\ne: {'true': 10}\n",
        )
        .unwrap();
        assert_eq!(value, want);
        assert!(originals.explain("a", "m".into()).contains("`yes`"));
        assert!(originals.explain("e.true", "m".into()).contains("`1_0`"));
        assert_eq!(originals.explain("b", "m".into()), "m");
    }

    #[test]
    fn written_strings_read_back_as_strings() {
        let text =
            "a: 'yes'\nb: \"1_000\"\nc: ['on', 'y', N, 'v1', '017']\nd: yes\n'off': x\ne: 1\n";
        let docs = read_documents(text).unwrap();
        let out = to_string(&docs[0]).unwrap();
        assert_eq!(
            out,
            "a: 'yes'\nb: '1_000'\nc:\n- 'on'\n- 'y'\n- 'N'\n- v1\n- '017'\nd: true\n'off': x\ne: 1\n"
        );
        assert_eq!(read_documents(&out).unwrap(), docs);
    }

    /// goyaml.v2 decode_test.go's merge cases: the anchored mapping's
    /// entries come in where `<<` stands, a list of them with the earlier
    /// ones winning; a quoted `"<<"` is an ordinary key.
    #[test]
    fn merge_keys_as_go_yaml_v2() {
        let text = "a: &a {p: 1, q: 2}\nb: &b {p: 3, r: 4}\nc: {<<: *a, p: 9}\nd: {p: 9, <<: *a}\ne: {<<: [*b, *a]}\nf: {'<<': *a}\n";
        let mut value: Value = serde_yaml::from_str(text).unwrap();
        let applied = apply(
            &mut value,
            &documents(text).unwrap()[0],
            &mut Originals::default(),
        );
        assert!(applied.errors.is_empty(), "{:?}", applied.errors);
        let want: Value = serde_yaml::from_str(
            "a: {p: 1, q: 2}\nb: {p: 3, r: 4}\nc: {p: 9, q: 2}\nd: {p: 1, q: 2}\ne: {p: 3, r: 4, q: 2}\nf: {'<<': {p: 1, q: 2}}\n",
        )
        .unwrap();
        assert_eq!(value, want);
        let text = "a: {<<: 1}\n";
        let mut value: Value = serde_yaml::from_str(text).unwrap();
        let applied = apply(
            &mut value,
            &documents(text).unwrap()[0],
            &mut Originals::default(),
        );
        assert_eq!(applied.errors.len(), 1);
        assert_eq!(applied.errors[0].field, "a");
    }

    /// Document boundaries as serde_yaml counts them, so each document
    /// meets its own shape; and a shape that does not match is left alone.
    #[test]
    fn documents_line_up_with_serde_yaml() {
        use serde::Deserialize;
        for text in [
            "a: yes\n",
            "---\na: yes\n",
            "# c\n---\n---\na: yes\n---\n",
            "a: 1\n---\n\n---\nb: yes\n...\n---\nc: on\n",
            "--- yes\n--- [on]\n",
        ] {
            let shapes = documents(text).unwrap();
            let values: Vec<Value> = serde_yaml::Deserializer::from_str(text)
                .map(|d| Value::deserialize(d).unwrap())
                .collect();
            assert_eq!(shapes.len(), values.len(), "{text:?}: {shapes:?}");
        }
        let mut value: Value = serde_yaml::from_str("a: yes\n").unwrap();
        let other = &documents("b: yes\n").unwrap()[0];
        apply(&mut value, other, &mut Originals::default());
        assert_eq!(value, serde_yaml::from_str::<Value>("a: 'yes'\n").unwrap());
    }

    #[test]
    fn single_letter_values_stay_strings_with_a_warning() {
        let text = "metadata: {name: y, labels: {n: N, y: x}}\n";
        let mut value: Value = serde_yaml::from_str(text).unwrap();
        let applied = apply(
            &mut value,
            &documents(text).unwrap()[0],
            &mut Originals::default(),
        );
        let want: Value =
            serde_yaml::from_str("metadata: {name: y, labels: {'false': N, 'true': x}}\n").unwrap();
        assert_eq!(value, want);
        let fields: Vec<_> = applied.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.labels.false"]);
    }
}
