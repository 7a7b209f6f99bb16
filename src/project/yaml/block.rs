//! A fast reader for the YAML that property files are written in: block mappings and lists,
//! one-line scalars and flow collections (`[unique, {accepted_values: ...}]`), comments. The
//! general parser reads some 15-30 MB/s; a project's schema files were a fifth of its parse.
//!
//! The general parser stays the reference. A key or list item written in anything else
//! (block scalars `|` `>`, plain or quoted scalars over several lines, escapes, numbers other
//! than plain integers) is handed to it as the text of that key or item alone; a file with
//! what cannot be read in pieces (anchors, aliases, tags, tabs, several documents) or with a
//! duplicate key, or a piece it refuses, is left to it whole, so the values, errors and
//! error lines are always its own.

use serde_json::{Map, Value as Json};

use super::Direct;

/// A line with content (blank and comment-only lines are skipped).
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// After the indent, without the newline and trailing spaces.
    text: &'a str,
    /// Where the line starts in the source; [`VIRTUAL`] for a mapping that starts after `- `.
    start: usize,
}

const VIRTUAL: usize = usize::MAX;
/// Deeper nesting is left to the general parser.
const MAX_DEPTH: usize = 64;

enum Fail {
    /// The file is read by the general parser.
    Whole,
    /// The nearest key or item that starts a line is read by the general parser.
    Piece,
}

type Read<T> = Result<T, Fail>;

/// The file's value, or `None` where the general parser must read it.
pub(super) fn parse(src: &str) -> Option<Json> {
    // An anchor, alias or tag starts a value and sends the file to the general parser, as
    // does an alias in a piece read by it that names an anchor outside the piece.
    if src.contains(['\t', '\r', '\u{feff}']) {
        return None;
    }
    let mut lines = Vec::new();
    let mut offset = 0;
    for raw in src.split_inclusive('\n') {
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let text = body.trim_start_matches(' ');
        if !(text.is_empty() || text.starts_with('#')) {
            let indent = body.len() - text.len();
            if indent == 0
                && (text.starts_with("---") || text.starts_with("...") || text.starts_with('%'))
            {
                return None;
            }
            lines.push(Line {
                indent,
                text: text.trim_end_matches(' '),
                start: offset,
            });
        }
        offset += raw.len();
    }
    let first = *lines.first()?;
    let mut reader = Reader { src, lines, at: 0 };
    let value = reader.block(first.indent, 0).ok()?;
    (reader.at == reader.lines.len()).then_some(value)
}

struct Reader<'a> {
    src: &'a str,
    lines: Vec<Line<'a>>,
    /// The next line to read.
    at: usize,
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> Reader<'a> {
    fn next_deeper_than(&self, indent: usize) -> bool {
        self.lines.get(self.at).is_some_and(|l| l.indent > indent)
    }

    /// The mapping or list whose first line is the next one, at `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Read<Json> {
        if depth > MAX_DEPTH {
            return Err(Fail::Whole);
        }
        let line = self.lines[self.at];
        debug_assert_eq!(line.indent, indent);
        if is_item(line.text) {
            self.list(indent, depth)
        } else if split_key(line.text).is_none() {
            // A quoted key, a scalar over several lines, an error: the node that holds it is
            // read by the general parser.
            Err(Fail::Piece)
        } else {
            self.at += 1;
            self.mapping(line, depth)
        }
    }

    fn list(&mut self, indent: usize, depth: usize) -> Read<Json> {
        let mut items = Vec::new();
        while let Some(&line) = self.lines.get(self.at) {
            if line.indent != indent || !is_item(line.text) {
                break;
            }
            let from = self.at;
            self.at += 1;
            match self.item(line, depth) {
                Ok(v) => items.push(v),
                Err(Fail::Piece) => {
                    self.at = from + 1;
                    match self.piece(line)? {
                        Json::Array(mut one) if one.len() == 1 => items.extend(one.pop()),
                        _ => return Err(Fail::Whole),
                    }
                }
                Err(whole) => return Err(whole),
            }
        }
        Ok(Json::Array(items))
    }

    /// A list item; the line after `line` is next.
    fn item(&mut self, line: Line<'a>, depth: usize) -> Read<Json> {
        let rest = line.text[1..].trim_start_matches(' ');
        let value = if rest.is_empty() || rest.starts_with('#') {
            if self.next_deeper_than(line.indent) {
                let indent = self.lines[self.at].indent;
                self.block(indent, depth + 1)?
            } else {
                Json::Null
            }
        } else if is_item(rest) {
            return Err(Fail::Piece);
        } else if split_key(rest).is_some() {
            let indent = line.indent + (line.text.len() - rest.len());
            let first = Line {
                indent,
                text: rest,
                start: VIRTUAL,
            };
            self.mapping(first, depth + 1)?
        } else {
            scalar(rest)?
        };
        if self.next_deeper_than(line.indent) {
            return Err(Fail::Piece);
        }
        Ok(value)
    }

    /// A mapping whose first line is `first` (already taken).
    fn mapping(&mut self, first: Line<'a>, depth: usize) -> Read<Json> {
        let indent = first.indent;
        let mut out = Map::new();
        let mut line = first;
        loop {
            let from = self.at;
            let (key, value) = match self.entry(line, depth) {
                Ok(kv) => kv,
                Err(Fail::Piece) if line.start != VIRTUAL => {
                    self.at = from;
                    match self.piece(line)? {
                        Json::Object(one) if one.len() == 1 => {
                            one.into_iter().next().ok_or(Fail::Whole)?
                        }
                        _ => return Err(Fail::Whole),
                    }
                }
                Err(e) => return Err(e),
            };
            if out.insert(key, value).is_some() {
                return Err(Fail::Whole);
            }
            match self.lines.get(self.at) {
                Some(&next) if next.indent == indent => {
                    if is_item(next.text) {
                        return Err(Fail::Piece);
                    }
                    self.at += 1;
                    line = next;
                }
                Some(next) if next.indent > indent => return Err(Fail::Piece),
                _ => break,
            }
        }
        Ok(Json::Object(out))
    }

    /// `key: value`, or `key:` and the block below it; the line after `line` is next.
    fn entry(&mut self, line: Line<'a>, depth: usize) -> Read<(String, Json)> {
        let (key, rest) = split_key(line.text).ok_or(Fail::Piece)?;
        let rest = rest.trim_start_matches(' ');
        let value = if rest.is_empty() || rest.starts_with('#') {
            match self.lines.get(self.at) {
                Some(next) if next.indent > line.indent => {
                    let indent = next.indent;
                    self.block(indent, depth + 1)?
                }
                Some(next) if next.indent == line.indent && is_item(next.text) => {
                    self.list(line.indent, depth + 1)?
                }
                _ => Json::Null,
            }
        } else {
            scalar(rest)?
        };
        if self.next_deeper_than(line.indent) {
            return Err(Fail::Piece);
        }
        Ok((key.to_string(), value))
    }

    /// The key or item on `line` (a whole line) with the lines below it, read by the general
    /// parser; the lines after it are next.
    fn piece(&mut self, line: Line<'a>) -> Read<Json> {
        if line.start == VIRTUAL {
            return Err(Fail::Whole);
        }
        while self.next_deeper_than(line.indent) {
            self.at += 1;
        }
        let end = self.lines.get(self.at).map_or(self.src.len(), |l| l.start);
        general(&self.src[line.start..end])
    }
}

fn general(text: &str) -> Read<Json> {
    serde_yaml::from_str::<Direct>(text)
        .map(|Direct(v)| v)
        .map_err(|_| Fail::Whole)
}

/// `key:` and what follows the colon, for a key the general parser reads as this same string
/// (a plain word that is not null, a boolean or a number).
fn split_key(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let (key, rest) = (&text[..colon], &text[colon + 1..]);
    let b = key.as_bytes();
    let plain = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b' '))
        && !key.contains(" #")
        && !is_reserved(key);
    (plain && (rest.is_empty() || rest.starts_with(' '))).then_some((key, rest))
}

fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
    )
}

/// A value written on the rest of its line.
fn scalar(text: &str) -> Read<Json> {
    let (value, used) = match text.as_bytes()[0] {
        b'"' | b'\'' => quoted(text)?,
        b'[' | b'{' => {
            let mut flow = Flow { s: text, i: 0 };
            let v = flow.value(0)?;
            (v, flow.i)
        }
        b'&' | b'*' | b'!' => return Err(Fail::Whole),
        b'-' if text.len() > 1 && text.as_bytes()[1] != b' ' => return plain(text),
        b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b',' | b']' | b'}' | b'-' | b':' | b'#' => {
            // `-1` or `-x` are plain scalars; the rest start a block scalar, a nested node or
            // an error: the general parser tells which.
            return Err(Fail::Piece);
        }
        _ => return plain(text),
    };
    let rest = &text[used..];
    if rest.is_empty() || rest.starts_with(" #") || rest.trim_start_matches(' ').is_empty() {
        Ok(value)
    } else {
        Err(Fail::Piece)
    }
}

/// A plain scalar that takes the rest of its line.
fn plain(text: &str) -> Read<Json> {
    let end = text.find(" #").unwrap_or(text.len());
    let plain = text[..end].trim_end_matches(' ');
    if plain.contains(": ") || plain.ends_with(':') {
        return Err(Fail::Piece);
    }
    resolve(plain)
}

/// A plain scalar as the general parser types it: null, a boolean, a number, else a string.
fn resolve(plain: &str) -> Read<Json> {
    match plain {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Json::Null),
        "true" | "True" | "TRUE" => return Ok(Json::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Json::Bool(false)),
        _ => {}
    }
    match plain.as_bytes()[0] {
        b'0'..=b'9' | b'+' | b'-' | b'.' => {
            let digits = plain.strip_prefix('-').unwrap_or(plain);
            let canonical = !digits.is_empty()
                && digits.len() <= 18
                && digits.bytes().all(|c| c.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            match plain.parse::<i64>() {
                Ok(i) if canonical => Ok(Json::from(i)),
                _ => general(plain),
            }
        }
        _ => Ok(Json::String(plain.to_string())),
    }
}

/// A quoted scalar at the start of `text` and the bytes it takes; one with escapes is read by
/// the general parser, one that does not end on its line is not read here.
fn quoted(text: &str) -> Read<(Json, usize)> {
    let b = text.as_bytes();
    let quote = b[0];
    let mut out = String::new();
    let mut from = 1;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' if quote == b'"' => {
                let mut j = i;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j >= b.len() {
                    return Err(Fail::Piece);
                }
                return Ok((general(&text[..=j])?, j + 1));
            }
            c if c == quote => {
                if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    out.push_str(&text[from..=i]);
                    i += 2;
                    from = i;
                    continue;
                }
                out.push_str(&text[from..i]);
                return Ok((Json::String(out), i + 1));
            }
            _ => i += 1,
        }
    }
    Err(Fail::Piece)
}

/// A flow collection (`[a, {b: c}]`) on one line.
struct Flow<'a> {
    s: &'a str,
    i: usize,
}

impl Flow<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Read<Json> {
        if depth > MAX_DEPTH {
            return Err(Fail::Whole);
        }
        self.skip_spaces();
        match self.peek().ok_or(Fail::Piece)? {
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    if self.peek() == Some(b']') && items.is_empty() {
                        self.i += 1;
                        return Ok(Json::Array(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if self.separator(b']')? {
                        return Ok(Json::Array(items));
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut out = Map::new();
                loop {
                    self.skip_spaces();
                    if self.peek() == Some(b'}') && out.is_empty() {
                        self.i += 1;
                        return Ok(Json::Object(out));
                    }
                    let key = match self.value(depth + 1)? {
                        Json::String(k) if !is_reserved(&k) => k,
                        _ => return Err(Fail::Piece),
                    };
                    self.skip_spaces();
                    if self.peek() != Some(b':') {
                        return Err(Fail::Piece);
                    }
                    self.i += 1;
                    self.skip_spaces();
                    let value = match self.peek() {
                        Some(b',' | b'}') => Json::Null,
                        _ => self.value(depth + 1)?,
                    };
                    if out.insert(key, value).is_some() {
                        return Err(Fail::Whole);
                    }
                    if self.separator(b'}')? {
                        return Ok(Json::Object(out));
                    }
                }
            }
            b'"' | b'\'' => {
                let (v, used) = quoted(&self.s[self.i..])?;
                self.i += used;
                Ok(v)
            }
            b'&' | b'*' | b'!' => Err(Fail::Whole),
            b'-' if !matches!(
                self.s.as_bytes().get(self.i + 1),
                None | Some(b' ' | b',' | b']' | b'}')
            ) =>
            {
                self.plain()
            }
            b',' | b']' | b'}' | b'#' | b'|' | b'>' | b'%' | b'@' | b'`' | b'?' | b'-' | b':' => {
                Err(Fail::Piece)
            }
            _ => self.plain(),
        }
    }

    fn plain(&mut self) -> Read<Json> {
        let rest = &self.s[self.i..];
        let mut end = rest.len();
        for (at, c) in rest.bytes().enumerate() {
            let next = rest.as_bytes().get(at + 1);
            let stops = match c {
                b',' | b']' | b'}' => true,
                b'[' | b'{' => return Err(Fail::Piece),
                b':' => next.is_none_or(|n| matches!(n, b' ' | b',' | b']' | b'}')),
                b' ' => next == Some(&b'#'),
                _ => false,
            };
            if stops {
                end = at;
                break;
            }
        }
        self.i += end;
        resolve(rest[..end].trim_end_matches(' '))
    }

    /// After an entry: `,` (another follows) or the closing bracket (`true`).
    fn separator(&mut self, close: u8) -> Read<bool> {
        self.skip_spaces();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.skip_spaces();
                // A trailing comma is left to the general parser.
                if self.peek() == Some(close) {
                    return Err(Fail::Piece);
                }
                Ok(false)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(true)
            }
            _ => Err(Fail::Piece),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general_parse(text: &str) -> Option<Json> {
        serde_yaml::from_str::<Direct>(text).ok().map(|Direct(v)| v)
    }

    /// What the fast reader reads, it reads as the general parser does.
    #[track_caller]
    fn agrees(text: &str) -> Option<Json> {
        let fast = parse(text);
        if let Some(v) = &fast {
            assert_eq!(Some(v), general_parse(text).as_ref(), "{text}");
        }
        fast
    }

    #[test]
    fn reads_property_files_as_the_general_parser() {
        let text = "version: 2\n\nmodels:\n  # a comment\n  - name: m1\n    description: \"x: y\" # c\n    config: {materialized: table, n: 1, f: 1.5, on: true, none: ~, neg: -3, d: -x}\n    neg: -4\n    dash: -a b\n    columns:\n      - name: id\n        data_tests: [unique, not_null, {accepted_values: {values: [1, 'it''s', \"b\"]}}]\n      - name: ref\n        tests:\n        - relationships: {arguments: {to: \"ref('x')\", field: id}}\n        - dbt_utils.expression_is_true:\n            expression: \"id > 0\"\n    meta:\n      url: http://example.com/a#b\n      empty:\n      list: []\n      map: {}\n  - name: m2\n    description: |\n      one\n\n      # not a comment\n    columns:\n    - name: x\n      description: >-\n        folded\n        text\n    - name: y\n      description: plain text\n        over two lines\n      quoted: \"esc\\\"aped\\n\"\n      quoted2: 'over\n        two'\n      -dash: 1\n";
        let v = agrees(text).expect("read fast");
        assert_eq!(v["models"][1]["columns"][0]["description"], "folded text");
        assert_eq!(v["models"][0]["meta"]["url"], "http://example.com/a#b");
        assert_eq!(
            v["models"][0]["columns"][0]["data_tests"][2]["accepted_values"]["values"][1],
            "it's"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// Whatever the lines, the fast reader reads a file as the general parser does or
        /// leaves it to it.
        #[test]
        fn never_disagrees_with_the_general_parser(lines in proptest::collection::vec(
            (0usize..4, 0usize..4, 0usize..9, 0usize..30), 1..12)
        ) {
            const LEAD: [&str; 4] = ["", "- ", "- - ", "-"];
            const KEYS: [&str; 9] = ["", "name: ", "a: ", "b:", "\"q\": ", "1: ", "on: ", "k # c: ", "x y: "];
            const VALUES: [&str; 30] = [
                "", "x", "'s''q'", "\"d\\\"q\"", "[a, b]", "{c: d, e: [1, -2]}", "|", ">-",
                "-1", "0x1", "1.5", "~", "true", "&a x", "*a", "x # c", "a: b", "[a,", "}",
                "http://x", "- y", "\"open", "'", "{a: 1, a: 2}", "[\"x\", 'y', {z: }]", "#",
                "007", "text:", "ref('m')", "é ü",
            ];
            let text: String = lines
                .iter()
                .map(|&(indent, lead, key, value)| {
                    format!("{}{}{}{}\n", " ".repeat(indent * 2), LEAD[lead], KEYS[key], VALUES[value])
                })
                .collect();
            agrees(&text);
        }
    }

    #[test]
    fn leaves_to_the_general_parser_what_it_does_not_read() {
        for text in [
            "a: 1\na: 2\n",
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "---\na: 1\n",
            "a:\n\tb: 1\n",
            "a: b: c\n",
            "- a\nb: 1\n",
            "a: [1, 2\n",
            "a: {b: 1\n",
            "a: \"open\n",
            "a:\n  - x\n b: 1\n",
            "a: 1\n  b: 2\n",
            "1: x\n",
            "True: x\n",
            "\"q\": 1\n",
        ] {
            assert_eq!(agrees(text), None, "{text}");
        }
        // Read in pieces by the general parser, the rest fast.
        for text in [
            "a:\n  b: 0x1f\n  c: 1e3\n  d: 007\n  e: .inf\n",
            "a:\n- - x\n  - y\n- z\n",
            "a: [1,]\n",
            "a:\n  \"q\": 1\n  b: 2\n",
            "a:\n  1: x\n  true: y\nb: 2\n",
            "a:\n  b:\n    plain\n    text\n",
        ] {
            assert!(agrees(text).is_some(), "{text}");
        }
    }
}
