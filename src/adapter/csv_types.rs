//! A seed's column types: what arrow-csv's inference finds in one pass over the whole file
//! (empty text as NULL), found faster. arrow-csv tests every value against a set of eight
//! regular expressions; on a 1 GB seed that was two thirds of the load's CPU, half of it in the
//! regex crate's cache pool, which both cores share. Here a value is classified by a few byte
//! comparisons (ASCII text; other text still goes through the same expressions), and a large
//! file is cut at record starts into a range per core. The kinds seen are kept as arrow-csv
//! keeps them, one bit each, so the ranges merge by OR, exactly as one pass would have found
//! them. Any trouble (a ragged row, a byte that is not UTF-8): arrow-csv reads the file whole,
//! for its own error.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::LazyLock;

use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::error::ArrowError;

/// A range's smallest size: below two of these a file is read on one core.
const MIN_RANGE: u64 = 32 << 20;

/// The column types of the CSV file at `path`, with a header row, as arrow-csv infers them.
pub fn infer(path: &Path, delimiter: u8) -> Result<Schema, ArrowError> {
    infer_in_ranges(path, delimiter, MIN_RANGE)
}

fn infer_in_ranges(path: &Path, delimiter: u8, min_range: u64) -> Result<Schema, ArrowError> {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let pieces = cores.min(len / min_range.max(1));
    let cuts = if pieces < 2 {
        Vec::new()
    } else {
        // A file that cannot be cut is read whole, on one core.
        record_starts(path, len, pieces, delimiter).unwrap_or_default()
    };
    let starts: Vec<u64> = std::iter::once(0).chain(cuts).collect();
    let ranges: Vec<(u64, u64)> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&len]))
        .map(|(&a, &b)| (a, b))
        .collect();
    let parts = crate::parallel::map(&ranges, 1, |&(start, end)| {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        // A seed's header row is in the first range only.
        kinds(file.take(end - start), start == 0, delimiter)
    });
    let mut parts = parts.into_iter();
    let merged = parts.next().and_then(|first| {
        let (names, mut seen) = first.ok()?;
        for part in parts {
            let (_, other) = part.ok()?;
            if other.len() != seen.len() {
                return None;
            }
            seen.iter_mut().zip(other).for_each(|(a, b)| *a |= b);
        }
        Some((names, seen))
    });
    match merged {
        Some((names, seen)) => Ok(Schema::new(
            names
                .into_iter()
                .zip(seen)
                .map(|(name, kinds)| Field::new(name, data_type(kinds), true))
                .collect::<Vec<_>>(),
        )),
        None => Format::default()
            .with_header(true)
            .with_delimiter(delimiter)
            .with_null_regex(null_pattern())
            .infer_schema(BufReader::new(File::open(path)?), None)
            .map(|(schema, _)| schema),
    }
}

/// What arrow-csv's readers take for NULL in a seed: an empty field.
pub fn null_pattern() -> regex::Regex {
    regex::Regex::new("^$").expect("static regex")
}

/// The column names (the header row, or the first record's width) and the kinds of values seen
/// in each column, read as arrow-csv reads a file for its inference.
fn kinds(
    input: impl Read,
    header: bool,
    delimiter: u8,
) -> Result<(Vec<String>, Vec<u16>), ArrowError> {
    let fail = |e: csv::Error| ArrowError::CsvError(e.to_string());
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(false)
        .delimiter(delimiter)
        .from_reader(input);
    let names: Vec<String> = reader
        .headers()
        .map_err(fail)?
        .iter()
        .map(String::from)
        .collect();
    let mut seen = vec![0u16; names.len()];
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(fail)? {
        for (kinds, value) in seen.iter_mut().zip(record.iter()) {
            if !value.is_empty() {
                *kinds |= kind(value);
            }
        }
    }
    Ok((names, seen))
}

// The kinds of value, as arrow-csv numbers them: one bit each.
const BOOLEAN: u16 = 1;
const INTEGER: u16 = 1 << 1;
const FLOAT: u16 = 1 << 2;
const DATE: u16 = 1 << 3;
/// Timestamps with seconds, then with up to 3, 6 and 9 digits of fraction.
const SECONDS: u16 = 1 << 4;
const TEXT: u16 = 1 << 8;

/// The type of a column in which these kinds of values were seen: nothing is NULL, integers
/// with floats are floats, dates and times are the finest time seen, any other mix is text.
fn data_type(kinds: u16) -> DataType {
    match kinds {
        0 => DataType::Null,
        BOOLEAN => DataType::Boolean,
        INTEGER => DataType::Int64,
        FLOAT | 0b110 => DataType::Float64,
        k if k & !0b1111_1000 == 0 => match 15 - k.leading_zeros() {
            3 => DataType::Date32,
            4 => DataType::Timestamp(TimeUnit::Second, None),
            5 => DataType::Timestamp(TimeUnit::Millisecond, None),
            6 => DataType::Timestamp(TimeUnit::Microsecond, None),
            _ => DataType::Timestamp(TimeUnit::Nanosecond, None),
        },
        _ => DataType::Utf8,
    }
}

/// The kind of one non-empty value: the first of arrow-csv's expressions it matches.
fn kind(value: &str) -> u16 {
    let b = value.as_bytes();
    if b.first() == Some(&b'"') {
        return TEXT;
    }
    if !value.is_ascii() {
        // `\d` and case-insensitive letters take in more than ASCII.
        return kind_by_regex(value);
    }
    if b.eq_ignore_ascii_case(b"true") || b.eq_ignore_ascii_case(b"false") {
        BOOLEAN
    } else if digits(b.strip_prefix(b"-").unwrap_or(b)) {
        // An integer too large for 64 bits is text.
        if b.len() >= 19 && value.parse::<i64>().is_err() {
            TEXT
        } else {
            INTEGER
        }
    } else if decimal(b) || matches!(value, "NaN" | "nan" | "inf" | "-inf") {
        FLOAT
    } else {
        temporal(b).unwrap_or(TEXT)
    }
}

/// At least one ASCII digit, and nothing else.
fn digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

/// `-?((\d*\.\d+|\d+\.\d*)([eE][-+]?\d+)?|\d+([eE][-+]?\d+))`
fn decimal(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let (mantissa, exponent) = match b.iter().position(|c| matches!(c, b'e' | b'E')) {
        Some(e) => (&b[..e], Some(&b[e + 1..])),
        None => (b, None),
    };
    if let Some(e) = exponent {
        let e = e.strip_prefix(b"+").or(e.strip_prefix(b"-")).unwrap_or(e);
        if !digits(e) {
            return false;
        }
    }
    match mantissa.iter().position(|&c| c == b'.') {
        Some(dot) => {
            let (whole, fraction) = (&mantissa[..dot], &mantissa[dot + 1..]);
            (digits(whole) || whole.is_empty())
                && (digits(fraction) || fraction.is_empty())
                && whole.len() + fraction.len() > 0
        }
        None => exponent.is_some() && digits(mantissa),
    }
}

/// `\d{4}-\d\d-\d\d` alone is a date; with `[T ]\d\d:\d\d:\d\d`, an optional fraction of up to
/// 9 digits and then anything (after a character that continues neither) on one line, a
/// timestamp of the fraction's precision.
fn temporal(b: &[u8]) -> Option<u16> {
    let shape = b"dddd-dd-dd dd:dd:dd";
    let fits = |n: usize| {
        b.len() >= n
            && b[..n]
                .iter()
                .zip(shape)
                .enumerate()
                .all(|(i, (c, s))| match s {
                    b'd' => c.is_ascii_digit(),
                    b' ' if i == 10 => matches!(c, b' ' | b'T'),
                    s => c == s,
                })
    };
    if b.len() == 10 && fits(10) {
        return Some(DATE);
    }
    if !fits(19) {
        return None;
    }
    // What follows the time: nothing, or a character and then the rest of one line.
    let tail = |t: &[u8]| t.is_empty() || !t[1..].contains(&b'\n');
    match &b[19..] {
        [] => Some(SECONDS),
        [b'.', rest @ ..] => {
            let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            let unit = match n {
                1..=3 => SECONDS << 1,
                4..=6 => SECONDS << 2,
                7..=9 => SECONDS << 3,
                _ => return None,
            };
            tail(&rest[n..]).then_some(unit)
        }
        [c, ..] if c.is_ascii_digit() => None,
        rest => tail(rest).then_some(SECONDS),
    }
}

/// arrow-csv's own expressions, for text that is not ASCII.
fn kind_by_regex(value: &str) -> u16 {
    static KINDS: LazyLock<regex::RegexSet> = LazyLock::new(|| {
        regex::RegexSet::new([
            r"(?i)^(true)$|^(false)$(?-i)",
            r"^-?(\d+)$",
            r"^-?((\d*\.\d+|\d+\.\d*)([eE][-+]?\d+)?|\d+([eE][-+]?\d+))$",
            r"^\d{4}-\d\d-\d\d$",
            r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[^\d\.].*)?$",
            r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d{1,3}(?:[^\d].*)?$",
            r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d{1,6}(?:[^\d].*)?$",
            r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\.\d{1,9}(?:[^\d].*)?$",
        ])
        .expect("static regex")
    });
    match KINDS.matches(value).into_iter().next() {
        Some(1) if value.len() >= 19 && value.parse::<i64>().is_err() => TEXT,
        Some(m) => 1 << m,
        None if matches!(value, "NaN" | "nan" | "inf" | "-inf") => FLOAT,
        None => TEXT,
    }
}

/// Where records start near each `k / pieces` of the file: after the first newline at or past
/// that point outside quotes (quotes are counted from the start; an escaped quote is doubled,
/// which keeps the count's parity). Fewer cuts where no such newline follows. A quote that
/// neither opens a field nor closes one (`12" pizza`, which a CSV reader keeps as text) would
/// make the count lie: such a file is an error here, and the caller infers it whole.
fn record_starts(path: &Path, len: u64, pieces: u64, delimiter: u8) -> std::io::Result<Vec<u64>> {
    let mut file = File::open(path)?;
    let mut targets = (1..pieces).map(|k| k * len / pieces).peekable();
    let mut cuts = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut quoted) = (0u64, false);
    // The byte before the block; none at the file's start.
    let mut before: Option<u8> = None;
    let edge = |b: u8| b == delimiter || b == b'\n' || b == b'\r' || b == b'"';
    let stray = || std::io::Error::other("a quote inside an unquoted field");
    'read: loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        // Whether the quote at `q` opens or closes a field (or is half of an escaped pair).
        let fits = |q: usize, quoted: bool| {
            if quoted {
                block.get(q + 1).is_none_or(|&b| edge(b))
            } else {
                q.checked_sub(1)
                    .map_or(before, |p| Some(block[p]))
                    .is_none_or(edge)
            }
        };
        let mut i = 0;
        while i < n {
            let Some(&target) = targets.peek() else {
                break 'read;
            };
            let at = pos + i as u64;
            if at < target {
                // Before the target only the quotes matter: found with memchr.
                let upto = usize::try_from(target - pos).map_or(n, |t| t.min(n));
                while let Some(off) = memchr::memchr(b'"', &block[i..upto]) {
                    if !fits(i + off, quoted) {
                        return Err(stray());
                    }
                    quoted = !quoted;
                    i += off + 1;
                }
                i = upto;
                continue;
            }
            match block[i] {
                b'"' if !fits(i, quoted) => return Err(stray()),
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    cuts.push(at + 1);
                    while targets.peek().is_some_and(|&t| t <= at + 1) {
                        targets.next();
                    }
                }
                _ => {}
            }
            i += 1;
        }
        before = Some(block[n - 1]);
        pos += n as u64;
    }
    cuts.retain(|&c| c < len);
    Ok(cuts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow_infer(path: &Path) -> Schema {
        Format::default()
            .with_header(true)
            .with_null_regex(null_pattern())
            .infer_schema(BufReader::new(File::open(path).unwrap()), None)
            .unwrap()
            .0
    }

    /// Cut into ranges, a file is typed as one pass of arrow-csv types it: kinds seen in one
    /// range only, NULL-only ranges, times of two precisions, quoted newlines and quotes near
    /// the cuts.
    #[test]
    fn types_inferred_in_ranges_are_arrows_of_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("rsdbt-seed-infer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.csv");
        let mut text = String::from("id,amount,maybe,at,note,flag,mixed\n");
        for i in 0..4000 {
            let first = i < 2000;
            let amount = if first {
                format!("{i}")
            } else {
                format!("{i}.5")
            };
            let maybe = if first { String::new() } else { format!("{i}") };
            let at = if first {
                "2024-01-02".to_string()
            } else {
                "2024-01-02T03:04:05".to_string()
            };
            let note = if i % 7 == 0 {
                format!("\"line one\nline \"\"two\"\", {i}\"")
            } else {
                format!("note {i}")
            };
            let mixed = if i == 3999 {
                "x".to_string()
            } else {
                i.to_string()
            };
            text += &format!("{i},{amount},{maybe},{at},{note},true,{mixed}\n");
        }
        std::fs::write(&path, &text).unwrap();
        let cut = infer_in_ranges(&path, b',', 1024).unwrap();
        assert_eq!(cut, arrow_infer(&path));
        let types: Vec<String> = cut
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "Int64",
                "Float64",
                "Int64",
                "Timestamp(s)",
                "Utf8",
                "Boolean",
                "Utf8"
            ]
        );
        // The cuts fall at record starts, never inside the quoted notes.
        let cuts = record_starts(&path, text.len() as u64, 4, b',').unwrap();
        assert_eq!(cuts.len(), 3);
        for c in cuts {
            let before = &text[..c as usize];
            assert!(before.ends_with('\n'));
            assert_eq!(before.matches('"').count() % 2, 0);
        }
        // A quote inside an unquoted field: not cut (the file is inferred whole).
        let stray = text.replacen("note 1,", "note 1 is 12\" long,", 1);
        std::fs::write(&path, &stray).unwrap();
        assert!(record_starts(&path, stray.len() as u64, 4, b',').is_err());
        assert_eq!(
            infer_in_ranges(&path, b',', 1024).unwrap(),
            arrow_infer(&path)
        );
        // A ragged row: arrow-csv's own error.
        std::fs::write(&path, "a,b\n1,2\n3\n").unwrap();
        let e = infer_in_ranges(&path, b',', 1024).unwrap_err().to_string();
        assert!(
            e.contains("Expected 2 records, found 1 records at line 3"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kinds_merge_as_arrows_inference() {
        use DataType::*;
        let ts = |u| Timestamp(u, None);
        assert_eq!(data_type(0), Null);
        assert_eq!(data_type(INTEGER | FLOAT), Float64);
        assert_eq!(data_type(BOOLEAN | INTEGER), Utf8);
        assert_eq!(data_type(DATE | SECONDS), ts(TimeUnit::Second));
        assert_eq!(
            data_type(SECONDS << 2 | SECONDS << 1),
            ts(TimeUnit::Microsecond)
        );
        assert_eq!(data_type(DATE | INTEGER), Utf8);
        assert_eq!(data_type(TEXT), Utf8);
    }

    /// The byte checks give what arrow-csv's expressions give, value by value.
    #[test]
    fn kinds_are_arrows_for_hand_picked_values() {
        for v in [
            "true",
            "FaLsE",
            "truee",
            "0",
            "-12",
            "--1",
            "-",
            "+1",
            "1.",
            ".5",
            "-.5e-3",
            ".",
            "1e5",
            "1E+05",
            "e5",
            "1e",
            "1.2.3",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "00000000000000000000001",
            "NaN",
            "inf",
            "-inf",
            "Inf",
            "2024-01-02",
            "2024-1-02",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05.",
            "2024-01-02 03:04:05.1",
            "2024-01-02 03:04:05.1234",
            "2024-01-02 03:04:05.1234567",
            "2024-01-02 03:04:05.1234567890",
            "2024-01-02 03:04:05+01:00",
            "2024-01-02 03:04:056",
            "2024-01-02 03:04:05.12x\n",
            "2024-01-02 03:04:05 a\nb",
            "2024-01-02 03:04:05\n",
            "2024-01-02 03:04:05.5\n",
            "2024-01-02 03:04",
            "2024-01-02x",
            "x",
            "12 pizzas",
        ] {
            assert_eq!(kind(v), kind_by_regex(v), "{v:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Values shaped like numbers, times and booleans (and near misses, non-ASCII digits and
        /// letters, line breaks) are classified as arrow-csv's expressions classify them.
        #[test]
        fn kinds_are_arrows_for_generated_values(v in proptest::prop_oneof![
            1 => "-?[0-9]{0,3}\\.?[0-9]{0,3}([eE][-+]?[0-9]{0,2})?",
            3 => concat!(
                "[0-9]{4}-[0-9]{2}-[0-9]{2}([T x][0-9]{2}:[0-9]{2}:[0-9]{2}",
                "(\\.[0-9]{0,11})?[-+Z x\n.0-9:\u{e9}]{0,4})?"
            ),
            1 => "[0-9\u{663}]{4}-[0-9]{1,2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9\u{663}]{2})?",
            1 => "[tTrRuUeEfFaAlLsS\u{17f}]{4,5}|NaN|nan|inf|-inf|Inf",
            1 => "-?[0-9\u{663}]{1,25}",
        ]) {
            proptest::prop_assume!(!v.is_empty());
            proptest::prop_assert_eq!(kind(&v), kind_by_regex(&v), "{:?}", v);
        }
    }
}
