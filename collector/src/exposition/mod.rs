//! The Prometheus exposition formats, parsed as Prometheus 2.42 parses them: text 0.0.4 ([`text`]) and
//! OpenMetrics 1.0 ([`openmetrics`]), chosen from the answer's `Content-Type` as 2.42 chooses
//! ([`Format::from_content_type`]).
//!
//! Roster owns this parser because no published crate parses these formats correctly and is kept up. It is
//! written against 2.42's lexers and parsers (`model/textparse/promlex.l`, `promparse.go`, `openmetricslex.l`,
//! `openmetricsparse.go` at tag v2.42.0), whose tests are ported here, and it accepts what they accept, plus the
//! quoted UTF-8 names of `exposition_formats.md`. Where it departs from 2.42 the comment at that rule says so.
//!
//! What it owns:
//! - **All or nothing.** [`parse`] returns every sample of the body or the first error; 2.42 rolls back a whole
//!   scrape on any parse error (`scrapeLoop.append`), and so does the scraper with this.
//! - **Series as Prometheus stores them.** Labels come out in exposed order with empty values dropped, as
//!   `labels.Builder` drops them; NaN values come out as Prometheus's normal NaN, so an exporter cannot forge a
//!   stale marker; a label name given twice fails the body, as the TSDB refuses such a series.
//! - **Cost bounded by the body.** Names and label values come out borrowed from the body ([`Parsed`] lives as
//!   long as it); only escaped ones are copied to be unescaped. Everything is validated on the way, and nothing
//!   is kept of metadata lines (HELP, TYPE, UNIT) beyond validating them.
//!
//! Whether one body exposes a series twice is for the scraper to judge ([`first_duplicate`]).

#[cfg(test)]
mod encode;
mod float;
mod openmetrics;
#[cfg(test)]
mod proptests;
mod text;

use std::{borrow::Cow, collections::HashSet};

/// Prometheus's normal NaN (`model/value.NormalNaN`): every NaN a body holds is stored with these bits, so that
/// no body can hold the stale marker (`StaleNaN`, `0x7ff0000000000002`).
pub(crate) const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

/// A body's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text004,
    /// OpenMetrics 1.0 (2.42 reads 0.0.1 with the same parser).
    OpenMetrics,
}

/// An answer in a format roster does not parse: the protobuf format, which roster never asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported content type {0:?}")]
pub(crate) struct UnsupportedContentType(pub(crate) String);

impl Format {
    /// The format of an answer with this `Content-Type`, as 2.42 picks its parser (`textparse.New`,
    /// `model/textparse/interface.go`): no header, an empty or unparsable one, and any other media type are the
    /// text format (which fails on an HTML page, as it should); `application/openmetrics-text` of any version is
    /// OpenMetrics; `application/vnd.google.protobuf` is refused.
    pub(crate) fn from_content_type(content_type: Option<&str>) -> Result<Format, UnsupportedContentType> {
        let Some(content_type) = content_type.filter(|value| !value.is_empty()) else {
            return Ok(Format::Text004);
        };
        match media_type(content_type).as_deref() {
            Some("application/openmetrics-text") => Ok(Format::OpenMetrics),
            Some("application/vnd.google.protobuf") => Err(UnsupportedContentType(content_type.to_owned())),
            _ => Ok(Format::Text004),
        }
    }
}

/// The lower-cased media type of a `Content-Type` value, or `None` when Go's `mime.ParseMediaType` would fail on
/// it: `type[/subtype]` of token characters, then `; key=value` parameters (a token or a quoted string), trailing
/// semicolons allowed, no parameter twice.
fn media_type(value: &str) -> Option<String> {
    let (base, mut rest) = value.find(';').map_or((value, ""), |at| value.split_at(at));
    let media_type = base.trim().to_ascii_lowercase();
    let (kind, after) = media_type.split_once('/').map_or((media_type.as_str(), None), |(k, s)| (k, Some(s)));
    if !is_mime_token(kind) || after.is_some_and(|subtype| !is_mime_token(subtype)) {
        return None;
    }
    let mut keys = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(media_type);
        }
        let param = rest.strip_prefix(';')?.trim_start();
        let key_len = param.find(|c| !is_mime_token_char(c)).unwrap_or(param.len());
        if key_len == 0 {
            // Go ignores one trailing semicolon and fails on anything else without a key.
            return param.is_empty().then_some(media_type);
        }
        let key = param[..key_len].to_ascii_lowercase();
        let value = param[key_len..].trim_start().strip_prefix('=')?.trim_start();
        rest = if let Some(quoted) = value.strip_prefix('"') {
            let mut escaped = false;
            let end = quoted.char_indices().find_map(|(i, c)| match (escaped, c) {
                (true, _) => {
                    escaped = false;
                    None
                }
                (false, '\\') => {
                    escaped = true;
                    None
                }
                (false, '"') => Some(i),
                (false, _) => None,
            })?;
            &quoted[end + 1..]
        } else {
            let len = value.find(|c| !is_mime_token_char(c)).unwrap_or(value.len());
            if len == 0 {
                return None;
            }
            &value[len..]
        };
        if keys.contains(&key) {
            return None;
        }
        keys.push(key);
    }
}

fn is_mime_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_mime_token_char)
}

/// Go's `mime.isTokenChar`: printable ASCII but the RFC 1521 specials.
fn is_mime_token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// One sample line of a body, its strings borrowed from the body unless unescaping changed them.
#[derive(Debug, Clone)]
pub(crate) struct Parsed<'a> {
    /// The metric name, unescaped if it was quoted.
    pub(crate) name: Cow<'a, str>,
    /// The labels in the order the body gives them, unescaped, without those whose value is empty.
    pub(crate) labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The value; any NaN has the bits of [`NORMAL_NAN`].
    pub(crate) value: f64,
    /// The sample's own timestamp (Unix ms), if it has one.
    pub(crate) timestamp_ms: Option<i64>,
}

/// Why a body was refused, and where: the first error ends the parse and nothing of the body is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub(crate) struct ParseError {
    /// The line (from 1) of the entry that failed.
    pub(crate) line: usize,
    /// What is wrong, in 2.42's words where it has them.
    pub(crate) what: String,
}

/// Every sample of `body`, in order, or the first error.
///
/// # Errors
/// Anything 2.42 refuses in that format (see [`text`] and [`openmetrics`]), and a label name given twice in a
/// series.
pub(crate) fn parse(body: &[u8], format: Format) -> Result<Vec<Parsed<'_>>, ParseError> {
    let mut samples = Vec::new();
    match format {
        Format::Text004 => text::parse(body, &mut samples)?,
        Format::OpenMetrics => openmetrics::parse(body, &mut samples)?,
    }
    Ok(samples)
}

/// The first sample whose series and timestamp an earlier line of the same body already gave (label order does
/// not matter), if any.
///
/// 2.42 keeps the first value of such a pair and drops the other without failing the scrape; the exposition
/// format calls its ingestion undefined. The scraper decides what to do with one.
pub(crate) fn first_duplicate<'s, 'a>(samples: &'s [Parsed<'a>]) -> Option<&'s Parsed<'a>> {
    let mut seen = HashSet::with_capacity(samples.len());
    samples.iter().find(|sample| {
        let mut labels: Vec<(&str, &str)> = sample.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        labels.sort_unstable();
        !seen.insert((sample.name.as_ref(), labels, sample.timestamp_ms))
    })
}

/// A series being read, its label pairs gathered in a vector kept from one line to the next.
struct SeriesBuf<'a> {
    name: Option<Cow<'a, str>>,
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> SeriesBuf<'a> {
    fn new() -> Self {
        Self { name: None, labels: Vec::new() }
    }

    /// The sample, after the checks that need the whole series: the metric name is there, and no label name is
    /// given twice (2.42's TSDB refuses such a series, which fails the scrape; `__name__` is the metric name's).
    /// The check comes before empty values are dropped: `{x="",x="1"}` fails here, where 2.42's label builder
    /// deletes both pairs first and stores the series without `x`.
    fn finish(&mut self, value: f64, timestamp_ms: Option<i64>) -> Result<Parsed<'a>, String> {
        let name = self.name.take().ok_or("missing metric name")?;
        if let Some(label) = duplicate_label(&self.labels) {
            return Err(format!("duplicate label name {label:?}"));
        }
        let labels = self.labels.drain(..).filter(|(_, value)| !value.is_empty()).collect();
        let value = if value.is_nan() { f64::from_bits(NORMAL_NAN) } else { value };
        Ok(Parsed { name, labels, value, timestamp_ms })
    }
}

/// A label name given twice, or `__name__` (the metric name's). Quadratic only for a few labels: a body of one
/// huge label set must not cost its size squared.
fn duplicate_label<'s>(labels: &'s [(Cow<'_, str>, Cow<'_, str>)]) -> Option<&'s str> {
    const COMPARE_ALL_UP_TO: usize = 16;
    if let Some((name, _)) = labels.iter().find(|(name, _)| name == "__name__") {
        return Some(name);
    }
    if labels.len() <= COMPARE_ALL_UP_TO {
        return labels
            .iter()
            .enumerate()
            .find(|(i, (name, _))| labels[..*i].iter().any(|(earlier, _)| earlier == name))
            .map(|(_, (name, _))| name.as_ref());
    }
    let mut names: Vec<&str> = labels.iter().map(|(name, _)| name.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0])
}

/// A position in the body, with the byte-level scanning both formats share.
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    /// Skips `[ \t]*` (the text format's blanks, allowed between any two tokens).
    fn skip_blanks(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        let len = self.body[start..].iter().position(|&b| !keep(b)).unwrap_or(self.body.len() - start);
        self.pos += len;
        &self.body[start..self.pos]
    }

    /// A metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`, or `None` (nothing consumed).
    fn metric_name(&mut self) -> Option<&'a str> {
        self.identifier(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
    }

    /// A label name, `[a-zA-Z_][a-zA-Z0-9_]*`, or `None` (nothing consumed).
    fn label_name(&mut self) -> Option<&'a str> {
        self.identifier(|b| b.is_ascii_alphabetic() || b == b'_')
    }

    fn identifier(&mut self, first: impl Fn(u8) -> bool) -> Option<&'a str> {
        if !self.peek().is_some_and(&first) {
            return None;
        }
        let name = self.take_while(|b| first(b) || b.is_ascii_digit());
        // ASCII by construction.
        std::str::from_utf8(name).ok()
    }

    /// A quoted metric or label name (exposition_formats.md: `"` escaped_string `"`, so no raw newline), not
    /// empty.
    fn quoted_name(&mut self) -> Result<Cow<'a, str>, String> {
        let name = self.quoted(false)?;
        if name.is_empty() {
            return Err("empty quoted name".to_owned());
        }
        Ok(name)
    }

    /// A double-quoted string, the cursor on its opening quote: `"(\\.|[^\\"])*"`, where `.` is any byte but a
    /// newline, and a raw newline is allowed only if `raw_newline` (2.42's text lexer allows it in label values;
    /// OpenMetrics and quoted names do not). It must be valid UTF-8; it is unescaped as 2.42's `lvalReplacer`
    /// does: `\"`, `\\` and `\n`, any other `\x` kept as it is.
    fn quoted(&mut self, raw_newline: bool) -> Result<Cow<'a, str>, String> {
        const UNTERMINATED: &str = "expected label value, got \"INVALID\"";
        debug_assert_eq!(self.peek(), Some(b'"'));
        let start = self.pos + 1;
        let mut at = start;
        let mut escaped = false;
        let end = loop {
            let rest = &self.body[at..];
            let found = if raw_newline {
                memchr::memchr2(b'"', b'\\', rest)
            } else {
                memchr::memchr3(b'"', b'\\', b'\n', rest)
            };
            let i = at + found.ok_or(UNTERMINATED)?;
            match self.body[i] {
                b'"' => break i,
                b'\\' if self.body.get(i + 1).is_some_and(|&b| b != b'\n') => {
                    escaped = true;
                    at = i + 2;
                }
                _ => return Err(UNTERMINATED.to_owned()),
            }
        };
        self.pos = end + 1;
        let raw = std::str::from_utf8(&self.body[start..end]).map_err(|_| "invalid UTF-8 label value")?;
        Ok(if escaped { Cow::Owned(unescape(raw)) } else { Cow::Borrowed(raw) })
    }
}

/// `\"`, `\\` and `\n` replaced; any other backslash kept with what follows it (2.42's `lvalReplacer`).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// How a format writes a label set; the two differ only in these.
#[derive(Clone, Copy)]
struct LabelSyntax {
    /// Blanks between any two tokens, a trailing comma, no comma needed between pairs, raw newlines in values
    /// (text 0.0.4 as 2.42 lexes it); otherwise exactly `name="value"` pairs joined by single commas
    /// (OpenMetrics).
    loose: bool,
    /// The first item in the braces may be the quoted metric name (a sample, not an exemplar).
    name_inside: bool,
}

/// The label set of a series, the cursor just after its `{`, into `series`; on return the cursor is just after
/// the `}`.
fn label_set<'a>(cur: &mut Cursor<'a>, series: &mut SeriesBuf<'a>, syntax: LabelSyntax) -> Result<(), String> {
    let mut first = true;
    loop {
        if syntax.loose {
            cur.skip_blanks();
        }
        if cur.eat(b'}') {
            return Ok(());
        }
        if !first && !syntax.loose {
            if !cur.eat(b',') {
                return Err(format!("expected comma or right brace, got {}", token(cur)));
            }
            if cur.peek() == Some(b'}') {
                return Err("expected label name, got \"BCLOSE\"".to_owned());
            }
        }
        let (name, quoted_name): (Cow<'a, str>, bool) = if let Some(name) = cur.label_name() {
            (Cow::Borrowed(name), false)
        } else if cur.peek() == Some(b'"') {
            (cur.quoted_name()?, true)
        } else {
            let what =
                if first && !syntax.loose { "expected label name or right brace" } else { "expected label name" };
            return Err(format!("{what}, got {}", token(cur)));
        };
        if syntax.loose {
            cur.skip_blanks();
        }
        if cur.peek() != Some(b'=') {
            // `{"name"}` or `{"name", a="b"}`: a quoted metric name, first in the braces (exposition_formats.md).
            if syntax.name_inside && first && quoted_name && series.name.is_none() {
                series.name = Some(name);
                first = false;
                if syntax.loose {
                    cur.skip_blanks();
                    cur.eat(b',');
                }
                continue;
            }
            return Err(format!("expected equal, got {}", token(cur)));
        }
        cur.pos += 1;
        if syntax.loose {
            cur.skip_blanks();
        }
        if cur.peek() != Some(b'"') {
            return Err("expected label value, got \"INVALID\"".to_owned());
        }
        let value = cur.quoted(syntax.loose)?;
        series.labels.push((name, value));
        first = false;
        if syntax.loose {
            // 2.42: "Free trailing commas are allowed", and a missing comma between pairs goes unnoticed.
            cur.skip_blanks();
            cur.eat(b',');
        }
    }
}

/// How 2.42 would name the token at the cursor in an error: only the kinds these messages need.
fn token(cur: &Cursor<'_>) -> &'static str {
    match cur.peek() {
        Some(b'}') => "\"BCLOSE\"",
        Some(b',') => "\"COMMA\"",
        Some(b'=') => "\"EQUAL\"",
        // A newline too: neither of 2.42's lexers has a rule for it inside braces.
        _ => "\"INVALID\"",
    }
}

/// Values compare by their bits, so that NaN equals NaN and `-0.0` differs from `0.0`.
#[cfg(test)]
impl PartialEq for Parsed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.labels == other.labels
            && self.value.to_bits() == other.value.to_bits()
            && self.timestamp_ms == other.timestamp_ms
    }
}

/// A sample to compare with, NaN already normal.
#[cfg(test)]
fn parsed(name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> Parsed<'static> {
    Parsed {
        name: name.to_owned().into(),
        labels: labels.iter().map(|&(k, v)| (k.to_owned().into(), v.to_owned().into())).collect(),
        value: if value.is_nan() { f64::from_bits(NORMAL_NAN) } else { value },
        timestamp_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::{Format, NORMAL_NAN, ParseError, UnsupportedContentType, first_duplicate, parse, parsed};

    const NODE_EXPORTER: &str = include_str!("../../../testdata/exposition/node_exporter-1.5.0-e2e-output.txt");
    const PROMETHEUS: &str = include_str!("../../../testdata/exposition/prometheus-2.42.0-promtestdata.txt");

    fn text(body: &str) -> Result<Vec<super::Parsed<'_>>, ParseError> {
        parse(body.as_bytes(), Format::Text004)
    }

    #[test]
    fn the_content_type_picks_the_parser_as_2_42_does() {
        for (content_type, expected) in [
            (None, Format::Text004),
            (Some(""), Format::Text004),
            (Some("text/plain; version=0.0.4; charset=utf-8"), Format::Text004),
            (Some("text/plain"), Format::Text004),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), Format::OpenMetrics),
            (Some("application/openmetrics-text; version=0.0.1"), Format::OpenMetrics),
            (Some("Application/OpenMetrics-Text"), Format::OpenMetrics),
            (Some("application/openmetrics-text;"), Format::OpenMetrics),
            (Some(" application/openmetrics-text ; version=1.0.0 ;"), Format::OpenMetrics),
            (Some("application/openmetrics-text; charset=\"utf-8\""), Format::OpenMetrics),
            (Some("text/html; charset=utf-8"), Format::Text004),
            (Some("application/json"), Format::Text004),
            // Unparsable, so 2.42 falls back to the text parser: a bad parameter, one given twice, no subtype.
            (Some("application/openmetrics-text; version"), Format::Text004),
            (Some("application/openmetrics-text; a=1; a=2"), Format::Text004),
            (Some("application/openmetrics-text; v=\"open"), Format::Text004),
            (Some("application/openmetrics-text;;"), Format::Text004),
            (Some("application/openmetrics-text; version=1.0.0 x"), Format::Text004),
            (Some("application/"), Format::Text004),
            (Some("a b/c"), Format::Text004),
        ] {
            assert_eq!(Format::from_content_type(content_type), Ok(expected), "{content_type:?}");
        }
        let protobuf = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
        assert_eq!(Format::from_content_type(Some(protobuf)), Err(UnsupportedContentType(protobuf.to_owned())));
        assert_eq!(
            UnsupportedContentType("application/vnd.google.protobuf".to_owned()).to_string(),
            "unsupported content type \"application/vnd.google.protobuf\""
        );
    }

    #[test]
    fn node_exporter_1_5_parses_whole() {
        let samples = text(NODE_EXPORTER).unwrap();
        // Its sample lines: every line that is neither blank nor a `#` line.
        assert_eq!(samples.len(), 2429);
        assert_eq!(samples.len(), NODE_EXPORTER.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count());
        assert!(first_duplicate(&samples).is_none());
        let bios = samples.iter().find(|s| s.name == "node_dmi_info").unwrap();
        assert!(bios.labels.contains(&("bios_vendor".into(), "Dell Inc.".into())));
        // `lv_layer=""` and its like are dropped, as Prometheus drops empty values.
        assert!(samples.iter().all(|s| s.labels.iter().all(|(_, v)| !v.is_empty())));
        assert!(NODE_EXPORTER.contains("=\"\""));
        let btrfs = samples.iter().find(|s| s.name == "node_btrfs_info").unwrap();
        assert_eq!(btrfs, &parsed("node_btrfs_info", &[("uuid", "7f07c59f-6136-449c-ab87-e1cf2328731b")], 1.0, None));
    }

    #[test]
    fn prometheus_2_42s_own_metrics_parse_whole() {
        let samples = text(PROMETHEUS).unwrap();
        // promparse_test.go: promtestdataSampleCount = 410.
        assert_eq!(samples.len(), 410);
        assert!(first_duplicate(&samples).is_none());
        assert_eq!(samples[0], parsed("go_gc_duration_seconds", &[("quantile", "0")], 4.9351e-05, None));
    }

    #[test]
    fn one_bad_line_fails_the_whole_body_with_its_line() {
        let body = "a 1\nb{x=\"1\"} 2\n\nc{x=\"1\" 3\nd 4\n";
        assert_eq!(
            text(body).unwrap_err(),
            ParseError { line: 4, what: "expected label name, got \"INVALID\"".to_owned() }
        );
        assert_eq!(text(body).unwrap_err().to_string(), "line 4: expected label name, got \"INVALID\"");
        // Lines are the body's: a raw newline inside a label value counts too.
        assert_eq!(text("a{x=\"1\n2\"} 1\nb 1\nc\n").unwrap_err().line, 4);
    }

    #[test]
    fn nan_comes_out_as_the_normal_nan_so_no_body_can_forge_a_stale_marker() {
        for format in [Format::Text004, Format::OpenMetrics] {
            for spelling in ["NaN", "nan", "NAN"] {
                let body = format!("a {spelling}\n# EOF\n");
                let body = if format == Format::Text004 { body.replace("# EOF\n", "") } else { body };
                let samples = parse(body.as_bytes(), format).unwrap();
                assert_eq!(samples[0].value.to_bits(), NORMAL_NAN, "{format:?} {spelling}");
            }
        }
    }

    #[test]
    fn a_label_name_given_twice_fails_the_body() {
        assert_eq!(text("a{le=\"600\",le=\"700\"} 1\n").unwrap_err().what, "duplicate label name \"le\"");
        assert_eq!(text("a{__name__=\"b\"} 1\n").unwrap_err().what, "duplicate label name \"__name__\"");
        // Past the size where names are sorted rather than compared pairwise.
        let mut many: String = (0..40).map(|i| format!("l{i}=\"v\",")).collect();
        assert_eq!(text(&format!("a{{{many}}} 1\n")).unwrap().len(), 1);
        many.push_str("l7=\"w\"");
        assert_eq!(text(&format!("a{{{many}}} 1\n")).unwrap_err().what, "duplicate label name \"l7\"");
    }

    #[test]
    fn labels_keep_their_order_and_lose_their_empty_values() {
        assert_eq!(text("a{z=\"1\",e=\"\",b=\"2\"} 1\n").unwrap(), [parsed("a", &[("z", "1"), ("b", "2")], 1.0, None)]);
    }

    #[test]
    fn values_with_separators_and_escapes_stay_whole() {
        // Label values that truncate in published crates.
        assert_eq!(
            text("a{a=\"x,y\",b=\"k=v\",c=\"}{\",d=\"\\\"q\\\"\"} 1\n").unwrap(),
            [parsed("a", &[("a", "x,y"), ("b", "k=v"), ("c", "}{"), ("d", "\"q\"")], 1.0, None)]
        );
        let long = "é".repeat(32 * 1024);
        let body = format!("a{{v=\"{long}\"}} 1\n");
        let samples = text(&body).unwrap();
        assert_eq!(samples[0].labels[0].1, long);
    }

    #[test]
    fn the_spec_example_parses_but_for_its_two_lines_2_42_refuses() {
        let example = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47
"#;
        assert_eq!(
            text(example).unwrap(),
            [
                parsed("http_requests_total", &[("method", "post"), ("code", "200")], 1027.0, Some(1395066363000)),
                parsed("http_requests_total", &[("method", "post"), ("code", "400")], 3.0, Some(1395066363000)),
                parsed(
                    "msdos_file_access_time_seconds",
                    &[("path", r"C:\DIR\FILE.TXT"), ("error", "Cannot find file:\n\"FILE.TXT\"")],
                    1.458255915e9,
                    None
                ),
                parsed("metric_without_timestamp_and_labels", &[], 12.47, None),
            ]
        );
        // Its UTF-8 line has no value, and 2.42 takes no minus sign in a timestamp.
        assert!(text("{\"my.dotted.metric\", \"error.message\"=\"Not Found\"}\n").is_err());
        assert!(text("something_weird{problem=\"division by zero\"} +Inf -3982045\n").is_err());
    }

    #[test]
    fn quoted_utf8_names_are_read() {
        assert_eq!(
            text("# HELP \"my.dotted.metric\" Dots.\n# TYPE \"my.dotted.metric\" gauge\n{\"my.dotted.metric\", \"error.message\"=\"Not Found\", code=\"404\"} 1\n{\"café\\\"s\"} 2\nplain{\"ü.x\"=\"y\"} 3\n")
                .unwrap(),
            [
                parsed("my.dotted.metric", &[("error.message", "Not Found"), ("code", "404")], 1.0, None),
                parsed("café\"s", &[], 2.0, None),
                parsed("plain", &[("ü.x", "y")], 3.0, None),
            ]
        );
        for bad in ["{\"\"} 1\n", "a{\"b\"} 1\n", "{x=\"1\", \"late.name\"} 1\n", "{\"a\nb\"} 1\n"] {
            assert!(text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_first_duplicate_is_the_second_line_of_a_series_at_one_time() {
        let samples = text("a{x=\"1\",y=\"2\"} 1\nb 1\na{y=\"2\",x=\"1\"} 2\na{x=\"1\",y=\"2\"} 3\n").unwrap();
        assert_eq!(first_duplicate(&samples), Some(&samples[2]));
        // Another timestamp is another sample; an empty value is no label at all.
        let samples = text("a 1 1000\na 2 2000\nb{x=\"\"} 1\n").unwrap();
        assert_eq!(first_duplicate(&samples), None);
        let samples = text("b{x=\"\"} 1\nb 2\n").unwrap();
        assert_eq!(first_duplicate(&samples), Some(&samples[1]));
    }
}
