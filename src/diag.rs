//! Diagnostics: mistakes in the user's project, reported with file, line, a caret and a hint.
//!
//! Every stage before execution returns `Result<T, Diagnostics>`; a stage collects as many
//! diagnostics as it can so one run reports all of them. Rendering (colors, width) happens
//! only in the CLI printer through [`Diagnostics::render`].

use std::fmt;
use std::sync::Arc;

/// Where a diagnostic points: a project file (path relative to the project root) and a byte range.
#[derive(Debug, Clone)]
pub struct Location {
    pub path: String,
    pub source: Arc<str>,
    /// Byte offset and length inside `source`.
    pub offset: usize,
    pub len: usize,
}

impl Location {
    /// A location from a 1-based line and column.
    pub fn at_line_col(path: &str, source: Arc<str>, line: usize, col: usize) -> Self {
        let offset = offset_of(&source, line, col);
        let mut len = source[offset..]
            .find('\n')
            .unwrap_or(source.len() - offset)
            .clamp(1, 80)
            .min(source.len().saturating_sub(offset));
        // The span ends on a character, not inside one.
        while len > 0 && !source.is_char_boundary(offset + len) {
            len -= 1;
        }
        Self {
            path: path.into(),
            source,
            offset,
            len,
        }
    }

    /// A location spanning the first occurrence of `needle` in `source` (or the start of the file).
    pub fn find(path: &str, source: Arc<str>, needle: &str) -> Self {
        match source.find(needle) {
            Some(offset) => Self {
                path: path.into(),
                len: needle.len(),
                source,
                offset,
            },
            None => Self {
                path: path.into(),
                source,
                offset: 0,
                len: 0,
            },
        }
    }

    /// The whole file, pointing at its start.
    pub fn file(path: &str, source: Arc<str>) -> Self {
        Self {
            path: path.into(),
            source,
            offset: 0,
            len: 0,
        }
    }

    /// 1-based line of the start of the span.
    pub fn line(&self) -> usize {
        self.source[..self.offset.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }
}

fn offset_of(source: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            // Columns count characters (as YAML and Jinja parsers report them), not bytes.
            let text = l.trim_end_matches('\n');
            let within = text
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i);
            return offset + within;
        }
        offset += l.len();
    }
    source.len()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the user's project.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A short, stable name of the kind of problem (`yaml`, `jinja`, `unknown-ref`, `cycle`, ...).
    pub code: &'static str,
    pub message: String,
    pub location: Option<Location>,
    /// What the caret points at.
    pub label: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            location: None,
            label: None,
            hint: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Renders the diagnostic as text: header, `--> file:line:col`, the source snippet with a
    /// caret, and the hint. `color` adds ANSI colors.
    pub fn render(&self, color: bool) -> String {
        let handler = miette::GraphicalReportHandler::new_themed(if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        })
        .with_width(100)
        .with_context_lines(1);
        let report = Report { diag: self };
        let mut out = String::new();
        let (lvl, paint) = match self.severity {
            Severity::Error => ("error", "\x1b[1;31m"),
            Severity::Warning => ("warning", "\x1b[1;33m"),
        };
        if color {
            out.push_str(&format!("{paint}{lvl}[{}]\x1b[0m: ", self.code));
        } else {
            out.push_str(&format!("{lvl}[{}]: ", self.code));
        }
        out.push_str(&self.message);
        out.push('\n');
        if let Some(loc) = &self.location {
            let line = loc.line();
            let col = loc.offset
                - loc.source[..loc.offset]
                    .rfind('\n')
                    .map(|p| p + 1)
                    .unwrap_or(0)
                + 1;
            out.push_str(&format!("  --> {}:{}:{}\n", loc.path, line, col));
        }
        let mut body = String::new();
        if handler.render_report(&mut body, &report).is_ok() {
            // The first line is miette's (empty) title; we printed our own header.
            let body = body.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
            out.push_str(body.trim_end());
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Adapter from our diagnostic to miette's renderer (snippet, caret, help).
struct Report<'a> {
    diag: &'a Diagnostic,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl fmt::Display for Report<'_> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}
impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag
            .hint
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.diag
            .location
            .as_ref()
            .map(|l| &l.source as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let loc = self.diag.location.as_ref()?;
        if loc.source.is_empty() {
            return None;
        }
        let span = miette::LabeledSpan::new(self.diag.label.clone(), loc.offset, loc.len);
        Some(Box::new(std::iter::once(span)))
    }
}

/// A list of diagnostics; an `Err` of this type always holds at least one error.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Err(self)` when any error was collected, else `Ok(value)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(value)
        }
    }
    pub fn render(&self, color: bool) -> String {
        self.0
            .iter()
            .map(|d| d.render(color))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// The closest candidate to `name`, for "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "did you mean 'x'?" or a fallback hint.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    fallback: &str,
) -> String {
    match closest(name, candidates) {
        Some(c) => format!("did you mean '{c}'?"),
        None => fallback.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_spans_end_on_one() {
        // Found by the property tests: a YAML error after multi-byte characters.
        let source: Arc<str> = "\"é日本*".into();
        let l = Location::at_line_col("x.yml", source.clone(), 1, 3);
        assert_eq!(&source[l.offset..l.offset + l.len], "日本*");
        let _ = Diagnostics::from(Diagnostic::error("yaml", "bad").at(l)).render(false);
    }
}
