//! OpenMetrics 1.0 text as Prometheus 2.42 reads it (`model/textparse/openmetricslex.l` and
//! `openmetricsparse.go` at v2.42.0; 2.42 reads `version=0.0.1` bodies with the same parser):
//! - the body ends with `# EOF` and at most one newline: "data does not end with # EOF" otherwise, "unexpected
//!   data after # EOF" if anything follows it; every other line ends with a newline;
//! - separators are exactly one space; no blank lines, no comments: a `#` line is `# HELP name text` (UTF-8),
//!   `# TYPE name type` (`counter`, `gauge`, `histogram`, `gaugehistogram`, `stateset`, `info`, `summary`,
//!   `unknown`), `# UNIT name unit` (the unit a `_`-separated suffix of the name) or `# EOF`; their order and
//!   uniqueness, and how families are grouped, are not checked (2.42 does not either);
//! - label sets are `name="value"` pairs joined by single commas, no trailing comma, no raw newline in a value;
//! - a value and a timestamp are read as Go's `ParseFloat` reads them ([`float`]); the timestamp
//!   is in seconds and becomes `int64(ts * 1000)` ms, truncated, as 2.42 computes it;
//! - an exemplar (`value [ts] # {labels} value [ts]`) is allowed only after a name ending `_total` or `_bucket`;
//!   it is checked as 2.42 checks it, then dropped (roster stores no exemplars);
//! - `_created` series are ordinary series, as in 2.42.
//!
//! Two departures from 2.42: quoted UTF-8 names are accepted here as in the text format, and a NaN value is
//! stored as the normal NaN here too (2.42's `getFloatValue` tests the exemplar's value instead of the sample's,
//! so it keeps whatever NaN bits the body spelt).

use std::borrow::Cow;

use super::{Cursor, LabelSyntax, ParseError, Parsed, SeriesBuf, float, label_set};

const LABELS: LabelSyntax = LabelSyntax { loose: false, name_inside: true };
const EXEMPLAR_LABELS: LabelSyntax = LabelSyntax { loose: false, name_inside: false };
const MISSING_EOF: &str = "data does not end with # EOF";

/// Every sample of an OpenMetrics `body` into `out`, or the first error.
pub(super) fn parse<'a>(body: &'a [u8], out: &mut Vec<Parsed<'a>>) -> Result<(), ParseError> {
    let mut series = SeriesBuf::new();
    let mut exemplar = SeriesBuf::new();
    let mut start = 0;
    let mut line = 0;
    loop {
        line += 1;
        let rest = &body[start..];
        let newline = memchr::memchr(b'\n', rest);
        let text = &rest[..newline.unwrap_or(rest.len())];
        let fail = |what: &str| ParseError { line, what: what.to_owned() };
        if let Some(after) = rest.strip_prefix(b"# EOF") {
            let after = after.strip_prefix(b"\n").unwrap_or(after);
            return if after.is_empty() { Ok(()) } else { Err(fail("unexpected data after # EOF")) };
        }
        // Every line before `# EOF` ends with a newline; 2.42 reaches the end of the data inside it.
        let Some(newline) = newline else { return Err(fail(MISSING_EOF)) };
        let mut cur = Cursor { body: text, pos: 0 };
        let entry = if text.first() == Some(&b'#') {
            metadata(&mut cur)
        } else {
            sample(&mut cur, &mut series, &mut exemplar).map(|sample| out.push(sample))
        };
        entry.map_err(|what| fail(&what))?;
        start += newline + 1;
    }
}

/// A `#` line without its newline, the cursor on the `#`.
fn metadata(cur: &mut Cursor<'_>) -> Result<(), String> {
    let line = &cur.body[cur.pos..];
    let keyword = match line.get(..7) {
        Some(b"# HELP ") => "HELP",
        Some(b"# TYPE ") => "TYPE",
        Some(b"# UNIT ") => "UNIT",
        _ => return Err("a # line is # HELP, # TYPE, # UNIT or # EOF (OpenMetrics has no comments)".to_owned()),
    };
    cur.pos += 7;
    let name = match cur.metric_name() {
        Some(name) => Cow::Borrowed(name),
        None if cur.peek() == Some(b'"') => cur.quoted_name()?,
        None => return Err(format!("expected metric name after {keyword}, got \"INVALID\"")),
    };
    if !cur.eat(b' ') {
        return Err(format!("expected text in {keyword}"));
    }
    let text = &cur.body[cur.pos..];
    match keyword {
        "HELP" if std::str::from_utf8(text).is_err() => Err("help text is not a valid utf8 string".to_owned()),
        "TYPE"
            if !matches!(
                text,
                b"counter"
                    | b"gauge"
                    | b"histogram"
                    | b"gaugehistogram"
                    | b"stateset"
                    | b"info"
                    | b"summary"
                    | b"unknown"
            ) =>
        {
            Err(format!("invalid metric type {:?}", String::from_utf8_lossy(text)))
        }
        "UNIT" if !unit_suffixes(name.as_bytes(), text) => Err(format!("unit not a suffix of metric {name:?}")),
        _ => Ok(()),
    }
}

/// An empty unit, or a unit that ends the name after a `_`.
fn unit_suffixes(name: &[u8], unit: &[u8]) -> bool {
    unit.is_empty() || (name.len() > unit.len() && name.ends_with(unit) && name[name.len() - unit.len() - 1] == b'_')
}

/// A sample line without its newline, the cursor on its first byte.
fn sample<'a>(
    cur: &mut Cursor<'a>,
    series: &mut SeriesBuf<'a>,
    exemplar: &mut SeriesBuf<'a>,
) -> Result<Parsed<'a>, String> {
    if let Some(name) = cur.metric_name() {
        series.name = Some(Cow::Borrowed(name));
    } else if cur.peek() != Some(b'{') {
        let got = cur.peek().map_or(String::new(), |b| format!(" {:?}", char::from(b)));
        return Err(format!("\"INVALID\"{got} is not a valid start token"));
    }
    if cur.eat(b'{') {
        label_set(cur, series, LABELS)?;
    }
    let value = field(cur).ok_or("expected value after metric, got \"INVALID\"")?;
    let value = float::parse(value)?;
    let mut timestamp_ms = None;
    if !at_exemplar(cur) {
        if let Some(seconds) = field(cur) {
            timestamp_ms = Some(timestamp(seconds, "invalid timestamp")?);
        } else if cur.peek().is_some() {
            return Err("expected timestamp or # symbol, got \"INVALID\"".to_owned());
        }
    }
    if at_exemplar(cur) {
        let name = series.name.as_deref().unwrap_or_default();
        if !(name.ends_with("_total") || name.ends_with("_bucket")) {
            return Err(format!("metric name {name} does not support exemplars"));
        }
        cur.pos += 4;
        skip_exemplar(cur, exemplar)?;
    }
    if cur.peek().is_some() {
        return Err("expected next entry after timestamp, got \"TIMESTAMP\"".to_owned());
    }
    series.finish(value, timestamp_ms)
}

/// `value [timestamp]` after an exemplar's `{labels}`: checked (labels, value, a finite timestamp), then
/// forgotten.
fn skip_exemplar<'a>(cur: &mut Cursor<'a>, exemplar: &mut SeriesBuf<'a>) -> Result<(), String> {
    label_set(cur, exemplar, EXEMPLAR_LABELS)?;
    // 2.42's exemplar lexer has no NUL handling, so a NUL in an exemplar's label value fails there.
    let nul = exemplar.labels.iter().any(|(_, value)| value.contains('\0'));
    exemplar.labels.clear();
    if nul {
        return Err("expected label value, got \"INVALID\"".to_owned());
    }
    float::parse(field(cur).ok_or("expected value after exemplar labels, got \"INVALID\"")?)?;
    if let Some(seconds) = field(cur) {
        timestamp(seconds, "invalid exemplar timestamp")?;
    }
    if cur.peek().is_some() {
        return Err("expected next entry after exemplar timestamp, got \"INVALID\"".to_owned());
    }
    Ok(())
}

/// ` # {`, which opens an exemplar.
fn at_exemplar(cur: &Cursor<'_>) -> bool {
    cur.body[cur.pos..].starts_with(b" # {")
}

/// ` ` and a field (`[^ \n]+`), or `None` (nothing consumed).
fn field<'a>(cur: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let rest = cur.body[cur.pos..].strip_prefix(b" ")?;
    let len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if len == 0 {
        return None;
    }
    cur.pos += 1 + len;
    Some(&rest[..len])
}

/// A timestamp in seconds as 2.42 reads it: `int64(ts * 1000)`, truncated toward zero. Go leaves a product
/// beyond int64 to the platform; it is refused here.
fn timestamp(seconds: &[u8], not_finite: &str) -> Result<i64, String> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    let seconds = float::parse(seconds)?;
    if !seconds.is_finite() {
        return Err(not_finite.to_owned());
    }
    let ms = (seconds * 1000.0).trunc();
    if !(-LIMIT..LIMIT).contains(&ms) {
        return Err("timestamp out of range".to_owned());
    }
    // In range and integral, so the conversion is exact.
    Ok(ms as i64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use prometheus_client::{
        encoding::text::encode,
        metrics::{
            counter::Counter,
            exemplar::{CounterWithExemplar, HistogramWithExemplars},
            family::Family,
            histogram::Histogram,
            info::Info,
        },
        registry::{Registry, Unit},
    };

    use super::super::{Format, Parsed, first_duplicate, parse, parsed};

    fn om(body: &[u8]) -> Result<Vec<Parsed<'_>>, String> {
        parse(body, Format::OpenMetrics).map_err(|e| e.what)
    }

    /// `TestOpenMetricsParse` (openmetricsparse_test.go, v2.42.0): its input, and the samples it expects, with
    /// labels in exposed order rather than sorted; exemplars are checked and dropped.
    #[test]
    fn open_metrics_parse() {
        let mut input = r#"# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# TYPE go_gc_duration_seconds summary
# UNIT go_gc_duration_seconds seconds
go_gc_duration_seconds{quantile="0"} 4.9351e-05
go_gc_duration_seconds{quantile="0.25"} 7.424100000000001e-05
go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05
# HELP nohelp1 
# HELP help2 escape \ \n \\ \" \x chars
# UNIT nounit 
go_gc_duration_seconds{quantile="1.0",a="b"} 8.3835e-05
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b="c"} 1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 33 123.123
# TYPE hh histogram
hh_bucket{le="+Inf"} 1
# TYPE gh gaugehistogram
gh_bucket{le="+Inf"} 1
# TYPE hhh histogram
hhh_bucket{le="+Inf"} 1 # {aa="bb"} 4
# TYPE ggh gaugehistogram
ggh_bucket{le="+Inf"} 1 # {cc="dd",xx="yy"} 4 123.123
# TYPE ii info
ii{foo="bar"} 1
# TYPE ss stateset
ss{ss="foo"} 1
ss{ss="bar"} 0
ss{A="a"} 0
# TYPE un unknown
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore="foo"} 1
testmetric{label="\"bar\""} 1
# TYPE foo counter
foo_total 17.0 1520879607.789 # {xx="yy"} 5"#
            .to_owned();
        input += "\n# HELP metric foo\x00bar";
        input += "\nnull_byte_metric{a=\"abc\x00\"} 1";
        input += "\n# EOF\n";

        let gc = "go_gc_duration_seconds";
        assert_eq!(
            om(input.as_bytes()).unwrap(),
            [
                parsed(gc, &[("quantile", "0")], 4.9351e-05, None),
                parsed(gc, &[("quantile", "0.25")], 7.424100000000001e-05, None),
                parsed(gc, &[("quantile", "0.5"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "1.0"), ("a", "b")], 8.3835e-05, None),
                parsed("go_gc_duration_seconds_count", &[], 99.0, None),
                parsed("some:aggregate:rate5m", &[("a_b", "c")], 1.0, None),
                parsed("go_goroutines", &[], 33.0, Some(123123)),
                parsed("hh_bucket", &[("le", "+Inf")], 1.0, None),
                parsed("gh_bucket", &[("le", "+Inf")], 1.0, None),
                parsed("hhh_bucket", &[("le", "+Inf")], 1.0, None),
                parsed("ggh_bucket", &[("le", "+Inf")], 1.0, None),
                parsed("ii", &[("foo", "bar")], 1.0, None),
                parsed("ss", &[("ss", "foo")], 1.0, None),
                parsed("ss", &[("ss", "bar")], 0.0, None),
                parsed("ss", &[("A", "a")], 0.0, None),
                parsed("_metric_starting_with_underscore", &[], 1.0, None),
                parsed("testmetric", &[("_label_starting_with_underscore", "foo")], 1.0, None),
                parsed("testmetric", &[("label", "\"bar\"")], 1.0, None),
                parsed("foo_total", &[], 17.0, Some(1520879607789)),
                parsed("null_byte_metric", &[("a", "abc\0")], 1.0, None),
            ]
        );
    }

    /// `TestOpenMetricsParseErrors` and the failing cases of `TestOMNullByteHandling` (v2.42.0), with 2.42's
    /// message where this parser words it the same, and its own where they part (both fail).
    #[test]
    fn open_metrics_parse_errors() {
        const NO_EOF: &str = "data does not end with # EOF";
        const AFTER_EOF: &str = "unexpected data after # EOF";
        const NOT_A_START: &str = "\"INVALID\" is not a valid start token";
        const NO_COMMENTS: &str = "a # line is # HELP, # TYPE, # UNIT or # EOF (OpenMetrics has no comments)";
        for (input, error) in [
            (&b""[..], NO_EOF),
            (b"\n", NOT_A_START),
            (b"metric", NO_EOF),
            (b"metric 1", NO_EOF),
            (b"metric 1\n", NO_EOF),
            (b"metric_total 1 # {aa=\"bb\"} 4", NO_EOF),
            (b"a\n#EOF\n", "expected value after metric, got \"INVALID\""),
            (b"\n\n#EOF\n", NOT_A_START),
            (b" a 1\n#EOF\n", "\"INVALID\" ' ' is not a valid start token"),
            (b"9\n#EOF\n", "\"INVALID\" '9' is not a valid start token"),
            (b"# TYPE u untyped\n#EOF\n", "invalid metric type \"untyped\""),
            (b"# TYPE c counter \n#EOF\n", "invalid metric type \"counter \""),
            (b"#  TYPE c counter\n#EOF\n", NO_COMMENTS),
            (b"# TYPE \n#EOF\n", "expected metric name after TYPE, got \"INVALID\""),
            (b"# TYPE m\n#EOF\n", "expected text in TYPE"),
            (b"# UNIT metric suffix\n#EOF\n", "unit not a suffix of metric \"metric\""),
            (b"# UNIT metricsuffix suffix\n#EOF\n", "unit not a suffix of metric \"metricsuffix\""),
            (b"# UNIT m suffix\n#EOF\n", "unit not a suffix of metric \"m\""),
            (b"# UNIT \n#EOF\n", "expected metric name after UNIT, got \"INVALID\""),
            (b"# UNIT m\n#EOF\n", "expected text in UNIT"),
            (b"# HELP \n#EOF\n", "expected metric name after HELP, got \"INVALID\""),
            (b"# HELP m\n#EOF\n", "expected text in HELP"),
            (b"a\t1\n#EOF\n", "expected value after metric, got \"INVALID\""),
            (b"a 1\t2\n#EOF\n", "strconv.ParseFloat: parsing \"1\\t2\": invalid syntax"),
            (b"a 1 2 \n#EOF\n", "expected next entry after timestamp, got \"TIMESTAMP\""),
            (b"a 1 2 #\n#EOF\n", "expected next entry after timestamp, got \"TIMESTAMP\""),
            (b"a 1 1z\n#EOF\n", "strconv.ParseFloat: parsing \"1z\": invalid syntax"),
            (b" # EOF\n", "\"INVALID\" ' ' is not a valid start token"),
            (b"# EOF\na 1", AFTER_EOF),
            (b"# EOF\n\n", AFTER_EOF),
            (b"# EOFa 1", AFTER_EOF),
            (b"#\tTYPE c counter\n", NO_COMMENTS),
            (b"# TYPE c  counter\n", "invalid metric type \" counter\""),
            (b"a 1 1 1\n# EOF\n", "expected next entry after timestamp, got \"TIMESTAMP\""),
            (b"a{b='c'} 1\n# EOF\n", "expected label value, got \"INVALID\""),
            (b"a{b=\"c\",} 1\n# EOF\n", "expected label name, got \"BCLOSE\""),
            (b"a{,b=\"c\"} 1\n# EOF\n", "expected label name or right brace, got \"COMMA\""),
            (b"a{b=\"c\"d=\"e\"} 1\n# EOF\n", "expected comma or right brace, got \"INVALID\""),
            (b"a{b=\"c\",,d=\"e\"} 1\n# EOF\n", "expected label name, got \"COMMA\""),
            (b"a{b=\n# EOF\n", "expected label value, got \"INVALID\""),
            (b"a{\xff=\"foo\"} 1\n# EOF\n", "expected label name or right brace, got \"INVALID\""),
            (b"a{b=\"\xff\"} 1\n# EOF\n", "invalid UTF-8 label value"),
            (b"a true\n", "strconv.ParseFloat: parsing \"true\": invalid syntax"),
            (b"something_weird{problem=\"\n# EOF\n", "expected label value, got \"INVALID\""),
            (b"empty_label_name{=\"\"} 0\n# EOF\n", "expected label name or right brace, got \"EQUAL\""),
            (b"foo 1_2\n\n# EOF\n", "unsupported character in float"),
            (b"foo 0x1p-3\n\n# EOF\n", "unsupported character in float"),
            (b"foo 0x1P-3\n\n# EOF\n", "unsupported character in float"),
            (b"foo 0 1_2\n\n# EOF\n", "unsupported character in float"),
            (b"custom_metric_total 1 # {aa=bb}\n# EOF\n", "expected label value, got \"INVALID\""),
            (b"custom_metric_total 1 # {aa=\"bb\"}\n# EOF\n", "expected value after exemplar labels, got \"INVALID\""),
            (b"custom_metric_total 1 # {aa=\"bb\"}", NO_EOF),
            (b"custom_metric 1 # {aa=\"bb\"}\n", "metric name custom_metric does not support exemplars"),
            (b"custom_metric_total 1 # {aa=\"bb\",,cc=\"dd\"} 1\n", "expected label name, got \"COMMA\""),
            (b"custom_metric_total 1 # {aa=\"bb\"} 1_2\n", "unsupported character in float"),
            (b"custom_metric_total 1 # {aa=\"bb\"} 0x1p-3\n", "unsupported character in float"),
            (b"custom_metric_total 1 # {aa=\"bb\"} true\n", "strconv.ParseFloat: parsing \"true\": invalid syntax"),
            (b"custom_metric_total 1 # {aa=\"bb\",cc=}\n", "expected label value, got \"INVALID\""),
            (b"custom_metric_total 1 # {aa=\\\"\xff\\\"} 9.0\n", "expected label value, got \"INVALID\""),
            (b"{b=\"c\",} 1\n", "expected label name, got \"BCLOSE\""),
            (b"a 1 NaN\n", "invalid timestamp"),
            (b"a 1 -Inf\n", "invalid timestamp"),
            (b"a 1 Inf\n", "invalid timestamp"),
            (b"# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 NaN\n", "invalid exemplar timestamp"),
            (b"# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 -Inf\n", "invalid exemplar timestamp"),
            (b"# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 Inf\n", "invalid exemplar timestamp"),
            // TestOMNullByteHandling.
            (b"a{b=\x00\"ssss\"} 1\n# EOF\n", "expected label value, got \"INVALID\""),
            (b"a{b=\"\x00", NO_EOF),
            (b"a{b\x00=\"hiih\"}\t1\n", "expected equal, got \"INVALID\""),
            (b"a\x00{b=\"ddd\"} 1\n", "expected value after metric, got \"INVALID\""),
            (b"#", NO_EOF),
            (b"# H", NO_EOF),
            (b"#\n", NO_COMMENTS),
            (b"# H\n", NO_COMMENTS),
            (b"custom_metric_total 1 # {b=\x00\"ssss\"} 1\n", "expected label value, got \"INVALID\""),
            (b"custom_metric_total 1 # {b=\"\x00ss\"} 1\n", "expected label value, got \"INVALID\""),
        ] {
            assert_eq!(om(input), Err(error.to_owned()), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn the_body_ends_with_eof_and_at_most_one_newline() {
        assert_eq!(om(b"# EOF"), Ok(vec![]));
        assert_eq!(om(b"# EOF\n"), Ok(vec![]));
        assert_eq!(om(b"a 1\n# EOF"), Ok(vec![parsed("a", &[], 1.0, None)]));
        let error = parse(b"a 1\nb 2\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(error.to_string(), "line 3: data does not end with # EOF");
    }

    /// The cases of `TestOMNullByteHandling` (v2.42.0) that parse.
    #[test]
    fn nul_bytes_in_label_values() {
        for (input, value) in [
            ("null_byte_metric{a=\"abc\x00\"} 1\n# EOF\n", "abc\0"),
            ("a{b=\"\x00ss\"} 1\n# EOF\n", "\0ss"),
            ("a{b=\"\x00\"} 1\n# EOF\n", "\0"),
            ("a{b=\"\x00\"} 1\n# EOF", "\0"),
        ] {
            assert_eq!(om(input.as_bytes()).unwrap()[0].labels[0].1, value);
        }
    }

    #[test]
    fn timestamps_are_seconds_truncated_to_ms_as_2_42_computes_them() {
        assert_eq!(
            om(b"a 1 1605281325.0\nb 1 -1.5\nc 1 0.0019\nd 1 1e3\ne 1 -0.0009\n# EOF\n").unwrap(),
            [
                parsed("a", &[], 1.0, Some(1_605_281_325_000)),
                parsed("b", &[], 1.0, Some(-1500)),
                parsed("c", &[], 1.0, Some(1)),
                parsed("d", &[], 1.0, Some(1_000_000)),
                parsed("e", &[], 1.0, Some(0)),
            ]
        );
        assert_eq!(om(b"a 1 1e16\n# EOF\n"), Err("timestamp out of range".to_owned()));
    }

    #[test]
    fn the_spec_example_reads_created_series_as_ordinary_ones() {
        let body = b"# TYPE acme_http_router_request_seconds summary\n\
# UNIT acme_http_router_request_seconds seconds\n\
# HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
# EOF\n";
        let samples = om(body).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[2],
            parsed(
                "acme_http_router_request_seconds_created",
                &[("path", "/api/v1"), ("method", "GET")],
                1605281325.0,
                None
            )
        );
    }

    #[test]
    fn what_the_text_format_allows_and_openmetrics_does_not() {
        for bad in [
            &b"a{b=\"x\ny\"} 1\n# EOF\n"[..],
            b"a  1\n# EOF\n",
            b"a{b=\"1\" } 1\n# EOF\n",
            b"a{ b=\"1\"} 1\n# EOF\n",
            b"a 1\r\n# EOF\n",
            b"# comment\n# EOF\n",
            b"a 1 123\n\n# EOF\n",
        ] {
            assert!(om(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            om(b"{\"a.b\",\"c.d\"=\"e\"} 1\n# UNIT \"x_seconds\" seconds\n# EOF\n").unwrap(),
            [parsed("a.b", &[("c.d", "e")], 1.0, None)]
        );
    }

    /// A body as roster's own `/metrics` will write it with `prometheus-client`: a prefix, units, a histogram,
    /// an info metric, exemplars with and without timestamps (it ends each HELP with a period of its own).
    #[test]
    fn a_prometheus_client_body_reads_whole() {
        let mut registry = Registry::with_prefix("roster");
        let histogram = Histogram::new([0.1, 1.0]);
        histogram.observe(0.05);
        histogram.observe(5.0);
        registry.register_with_unit("scrape_duration", "How long a scrape took", Unit::Seconds, histogram);
        let scrapes = Family::<Vec<(String, String)>, Counter>::default();
        scrapes.get_or_create(&vec![("outcome".to_owned(), "body_too_large".to_owned())]).inc_by(3);
        registry.register("scrapes", "Scrapes by outcome", scrapes);
        registry.register("build", "The build", Info::new(vec![("version".to_owned(), "0.1.0".to_owned())]));
        let exemplar = vec![("trace_id".to_owned(), "abc".to_owned())];
        let with_exemplar = CounterWithExemplar::<Vec<(String, String)>>::default();
        with_exemplar.inc_by(2, Some(exemplar.clone()), Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)));
        registry.register("traced", "Counted with an exemplar", with_exemplar);
        let latency = HistogramWithExemplars::<Vec<(String, String)>>::new([1.0].into_iter());
        latency.observe(0.5, Some(exemplar), None);
        registry.register("latency", "Observed with an exemplar", latency);
        let mut body = String::new();
        encode(&mut body, &registry).unwrap();

        let samples = om(body.as_bytes()).unwrap();
        assert!(first_duplicate(&samples).is_none());
        let find = |name: &str, labels: &[(&str, &str)]| {
            samples.iter().find(|s| {
                s.name == name && s.labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).eq(labels.iter().copied())
            })
        };
        assert_eq!(find("roster_scrape_duration_seconds_sum", &[]).map(|s| s.value), Some(5.05), "{body}");
        assert_eq!(find("roster_scrape_duration_seconds_count", &[]).map(|s| s.value), Some(2.0));
        assert_eq!(find("roster_scrape_duration_seconds_bucket", &[("le", "0.1")]).map(|s| s.value), Some(1.0));
        assert_eq!(find("roster_scrape_duration_seconds_bucket", &[("le", "+Inf")]).map(|s| s.value), Some(2.0));
        assert_eq!(find("roster_scrapes_total", &[("outcome", "body_too_large")]).map(|s| s.value), Some(3.0));
        assert_eq!(find("roster_build_info", &[("version", "0.1.0")]).map(|s| s.value), Some(1.0));
        assert_eq!(find("roster_traced_total", &[]).map(|s| s.value), Some(2.0), "{body}");
        assert_eq!(find("roster_latency_bucket", &[("le", "1.0")]).map(|s| s.value), Some(1.0), "{body}");
        assert!(body.contains(" # {trace_id=\"abc\"} "), "the exemplars were written: {body}");
    }
}
