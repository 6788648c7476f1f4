//! The text format 0.0.4 as Prometheus 2.42 reads it (`model/textparse/promlex.l` and `promparse.go` at
//! v2.42.0), which is looser than its own spec in places exporters rely on:
//! - blanks (`[ \t]+`) between any two tokens, also inside the braces and around `=`, and before an entry;
//!   blank lines are skipped; the last line needs no newline (2.42 appends one to the body);
//! - `#` lines: `# HELP name text` (text must be UTF-8) and `# TYPE name type` (`counter`, `gauge`, `histogram`,
//!   `summary`, `untyped`) are checked, any other `#` line is a comment; no order or uniqueness of metadata is
//!   checked, nor families, buckets or quantiles (2.42's parser is line-local);
//! - label sets: a trailing comma, and a missing comma between two pairs, go through; values are
//!   `"(\\.|[^\\"])*"`, so a raw newline inside quotes is accepted, and they must be UTF-8; NUL bytes are
//!   allowed in label values, HELP text and comments;
//! - a value is `[^{ \t\n]+` read as Go's `ParseFloat` reads it ([`float`]), so `1\r` at a CRLF
//!   line end fails; a timestamp is digits only (int64 ms, no sign) and ends the line.
//!
//! Added to 2.42, as `exposition_formats.md` now specifies: quoted UTF-8 names, `{"my.metric", "a.b"="c"}` and
//! `# HELP "my.metric" text`.
//!
//! One departure: 2.42's lexer takes a NUL byte where an entry starts, or in a `#…` comment without a blank
//! after the `#`, for the end of the body, and silently drops the rest. Here such a NUL is an invalid start
//! token, and a comment runs to its newline whatever it holds.

use std::borrow::Cow;

use super::{Cursor, LabelSyntax, ParseError, Parsed, SeriesBuf, float, label_set};

const LABELS: LabelSyntax = LabelSyntax { loose: true, name_inside: true };

/// Every sample of a text-format `body` into `out`, or the first error.
pub(super) fn parse<'a>(body: &'a [u8], out: &mut Vec<Parsed<'a>>) -> Result<(), ParseError> {
    let mut cur = Cursor { body, pos: 0 };
    let mut series = SeriesBuf::new();
    loop {
        cur.skip_blanks();
        let entry_start = cur.pos;
        let entry = match cur.peek() {
            None => return Ok(()),
            Some(b'\n') => {
                cur.pos += 1;
                continue;
            }
            Some(b'#') => metadata_or_comment(&mut cur),
            Some(_) => sample(&mut cur, &mut series).map(|sample| out.push(sample)),
        };
        // Label values may span lines, so the line of an error is counted from the start (only then).
        entry
            .map_err(|what| ParseError { line: 1 + memchr::memchr_iter(b'\n', &body[..entry_start]).count(), what })?;
    }
}

/// A `#` line, the cursor on the `#`; on return the cursor is past its newline.
fn metadata_or_comment(cur: &mut Cursor<'_>) -> Result<(), String> {
    cur.pos += 1;
    // `#[ \t]+` opens a comment that may be HELP or TYPE; `#` alone, `#foo` and `# Hrandom` are comments.
    let keyword = if cur.take_while(is_blank).is_empty() {
        None
    } else {
        let rest = &cur.body[cur.pos..];
        let blank_after = rest.get(4).copied().is_some_and(is_blank);
        match &rest[..rest.len().min(4)] {
            b"HELP" if blank_after => Some("HELP"),
            b"TYPE" if blank_after => Some("TYPE"),
            _ => None,
        }
    };
    let Some(keyword) = keyword else {
        skip_line(cur);
        return Ok(());
    };
    cur.pos += 4;
    cur.skip_blanks();
    if cur.metric_name().is_none() {
        if cur.peek() != Some(b'"') {
            return Err(format!("expected metric name after {keyword}, got \"INVALID\""));
        }
        cur.quoted_name()?;
    }
    // 2.42 lexes the rest of the line as one token and drops its first byte (the separating blank, or whatever
    // follows the name); a rest of blanks only is an empty text.
    let rest = skip_line(cur);
    let text = if rest.iter().all(|&b| is_blank(b)) { &[][..] } else { &rest[1..] };
    if keyword == "TYPE" {
        if !matches!(text, b"counter" | b"gauge" | b"histogram" | b"summary" | b"untyped") {
            return Err(format!("invalid metric type {:?}", String::from_utf8_lossy(text)));
        }
    } else if std::str::from_utf8(text).is_err() {
        return Err("help text is not a valid utf8 string".to_owned());
    }
    Ok(())
}

/// A sample line, the cursor on its first byte; on return the cursor is past its newline.
fn sample<'a>(cur: &mut Cursor<'a>, series: &mut SeriesBuf<'a>) -> Result<Parsed<'a>, String> {
    if let Some(name) = cur.metric_name() {
        series.name = Some(Cow::Borrowed(name));
        cur.skip_blanks();
    } else if cur.peek() != Some(b'{') {
        return Err("\"INVALID\" is not a valid start token".to_owned());
    }
    if cur.eat(b'{') {
        label_set(cur, series, LABELS)?;
        cur.skip_blanks();
    }
    // No blank is needed between `}` and the value: `[^{ \t\n]+` starts right there.
    let value = cur.take_while(|b| !matches!(b, b'{' | b' ' | b'\t' | b'\n'));
    if value.is_empty() {
        return Err("expected value after metric, got \"INVALID\"".to_owned());
    }
    let value = float::parse(value)?;
    cur.skip_blanks();
    let timestamp_ms = match cur.peek() {
        None | Some(b'\n') => None,
        Some(b) if b.is_ascii_digit() => {
            let digits = cur.take_while(|b| b.is_ascii_digit());
            cur.skip_blanks();
            if !matches!(cur.peek(), None | Some(b'\n')) {
                return Err("expected next entry after timestamp, got \"INVALID\"".to_owned());
            }
            Some(timestamp(digits)?)
        }
        Some(_) => return Err("expected timestamp or new record, got \"INVALID\"".to_owned()),
    };
    cur.eat(b'\n');
    series.finish(value, timestamp_ms)
}

/// Go's `strconv.ParseInt(digits, 10, 64)` of ASCII digits.
fn timestamp(digits: &[u8]) -> Result<i64, String> {
    digits
        .iter()
        .try_fold(0_i64, |acc, &d| acc.checked_mul(10)?.checked_add(i64::from(d - b'0')))
        .ok_or_else(|| format!("strconv.ParseInt: parsing {:?}: value out of range", String::from_utf8_lossy(digits)))
}

/// The rest of the line, without its newline; the cursor moves past the newline.
fn skip_line<'a>(cur: &mut Cursor<'a>) -> &'a [u8] {
    let rest = &cur.body[cur.pos..];
    let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    cur.pos += len;
    cur.eat(b'\n');
    &rest[..len]
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Parsed, parse, parsed};

    fn text(body: &[u8]) -> Result<Vec<Parsed<'_>>, String> {
        parse(body, Format::Text004).map_err(|e| e.what)
    }

    /// `TestPromParse` (promparse_test.go, v2.42.0): its input, and the samples it expects, with labels in
    /// exposed order rather than sorted.
    #[test]
    fn prom_parse() {
        let mut input = r#"# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# 	TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 4.9351e-05
go_gc_duration_seconds{quantile="0.25",} 7.424100000000001e-05
go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05
go_gc_duration_seconds{quantile="0.8", a="b"} 8.3835e-05
go_gc_duration_seconds{ quantile="0.9", a="b"} 8.3835e-05
# Hrandom comment starting with prefix of HELP
#
wind_speed{A="2",c="3"} 12345
# comment with escaped \n newline
# comment with escaped \ escape character
# HELP nohelp1
# HELP nohelp2 
go_gc_duration_seconds{ quantile="1.0", a="b" } 8.3835e-05
go_gc_duration_seconds { quantile="1.0", a="b" } 8.3835e-05
go_gc_duration_seconds { quantile= "1.0", a= "b", } 8.3835e-05
go_gc_duration_seconds { quantile = "1.0", a = "b" } 8.3835e-05
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b="c"}	1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 33  	123123
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore="foo"} 1
testmetric{label="\"bar\""} 1"#
            .to_owned();
        input += "\n# HELP metric foo\x00bar";
        input += "\nnull_byte_metric{a=\"abc\x00\"} 1";

        let gc = "go_gc_duration_seconds";
        assert_eq!(
            text(input.as_bytes()).unwrap(),
            [
                parsed(gc, &[("quantile", "0")], 4.9351e-05, None),
                parsed(gc, &[("quantile", "0.25")], 7.424100000000001e-05, None),
                parsed(gc, &[("quantile", "0.5"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "0.8"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "0.9"), ("a", "b")], 8.3835e-05, None),
                parsed("wind_speed", &[("A", "2"), ("c", "3")], 12345.0, None),
                parsed(gc, &[("quantile", "1.0"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "1.0"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "1.0"), ("a", "b")], 8.3835e-05, None),
                parsed(gc, &[("quantile", "1.0"), ("a", "b")], 8.3835e-05, None),
                parsed("go_gc_duration_seconds_count", &[], 99.0, None),
                parsed("some:aggregate:rate5m", &[("a_b", "c")], 1.0, None),
                parsed("go_goroutines", &[], 33.0, Some(123123)),
                parsed("_metric_starting_with_underscore", &[], 1.0, None),
                parsed("testmetric", &[("_label_starting_with_underscore", "foo")], 1.0, None),
                parsed("testmetric", &[("label", "\"bar\"")], 1.0, None),
                parsed("null_byte_metric", &[("a", "abc\0")], 1.0, None),
            ]
        );
    }

    /// `TestPromParseErrors` and the failing cases of `TestPromNullByteHandling` (v2.42.0), with 2.42's message
    /// where this parser words it the same, and its own where the two lexers part (both fail).
    #[test]
    fn prom_parse_errors() {
        for (input, error) in [
            (&b"a"[..], "expected value after metric, got \"INVALID\""),
            (b"a{b='c'} 1\n", "expected label value, got \"INVALID\""),
            (b"a{b=\n", "expected label value, got \"INVALID\""),
            (b"a{\xff=\"foo\"} 1\n", "expected label name, got \"INVALID\""),
            (b"a{b=\"\xff\"} 1\n", "invalid UTF-8 label value"),
            (b"a true\n", "strconv.ParseFloat: parsing \"true\": invalid syntax"),
            (b"something_weird{problem=\"", "expected label value, got \"INVALID\""),
            (b"empty_label_name{=\"\"} 0", "expected label name, got \"EQUAL\""),
            (b"foo 1_2\n", "unsupported character in float"),
            (b"foo 0x1p-3\n", "unsupported character in float"),
            (b"foo 0x1P-3\n", "unsupported character in float"),
            (b"foo 0 1_2\n", "expected next entry after timestamp, got \"INVALID\""),
            (b"# TYPE #\n#EOF\n", "expected metric name after TYPE, got \"INVALID\""),
            (b"# HELP #\n#EOF\n", "expected metric name after HELP, got \"INVALID\""),
            (b"a{b=\x00\"ssss\"} 1\n", "expected label value, got \"INVALID\""),
            (b"a{b=\"\x00", "expected label value, got \"INVALID\""),
            (b"a{b\x00=\"hiih\"}\t1", "expected equal, got \"INVALID\""),
            (b"a\x00{b=\"ddd\"} 1", "strconv.ParseFloat: parsing \"\\0\": invalid syntax"),
            (b"a 0 1\x00", "expected next entry after timestamp, got \"INVALID\""),
            // 2.42: `"INVALID" is not a valid start token`; a name may now be quoted inside the braces.
            (b"{a=\"ok\"} 1", "missing metric name"),
        ] {
            assert_eq!(text(input), Err(error.to_owned()), "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// The cases of `TestPromNullByteHandling` (v2.42.0) that parse.
    #[test]
    fn nul_bytes_in_label_values() {
        for (input, value) in [
            ("null_byte_metric{a=\"abc\x00\"} 1", "abc\0"),
            ("a{b=\"\x00ss\"} 1\n", "\0ss"),
            ("a{b=\"\x00\"} 1\n", "\0"),
        ] {
            assert_eq!(text(input.as_bytes()).unwrap()[0].labels[0].1, value);
        }
    }

    #[test]
    fn metadata_lines_are_checked_and_dropped() {
        for ok in [
            "# TYPE a counter\n",
            "# TYPE a gauge\n# TYPE a histogram\n# TYPE a summary\n# TYPE a untyped\n",
            "# TYPE a\tcounter\n",
            "#\tHELP a text with \\ and \\n\n",
            "# HELP a \n",
            "# HELP\n",
            "#HELP a b\n",
            "# HELPa b\n",
            "# HELP a.b text\n",
            "  # HELP a indented\n",
            "# HELP a é\n",
        ] {
            assert_eq!(text(ok.as_bytes()), Ok(vec![]), "{ok:?}");
        }
        for (bad, error) in [
            (&b"# TYPE a counter \n"[..], "invalid metric type \"counter \""),
            (b"# TYPE a  counter\n", "invalid metric type \" counter\""),
            (b"# TYPE a Counter\n", "invalid metric type \"Counter\""),
            (b"# TYPE a gaugehistogram\n", "invalid metric type \"gaugehistogram\""),
            (b"# TYPE a\n", "invalid metric type \"\""),
            (b"# HELP a \xff\n", "help text is not a valid utf8 string"),
            (b"# HELP \n", "expected metric name after HELP, got \"INVALID\""),
            (b"# TYPE 1a counter\n", "expected metric name after TYPE, got \"INVALID\""),
        ] {
            assert_eq!(text(bad), Err(error.to_owned()), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// What 2.42's lexer lets through beyond its spec, which exporters may rely on.
    #[test]
    fn the_lexers_looseness_is_kept() {
        assert_eq!(
            text(b"a{b=\"1\" c=\"2\"}3\n  \t\nd{}4 5\n").unwrap(),
            [parsed("a", &[("b", "1"), ("c", "2")], 3.0, None), parsed("d", &[], 4.0, Some(5))]
        );
        // A raw newline inside quotes; an unknown escape kept with its backslash.
        assert_eq!(
            text(b"a{b=\"x\ny\",c=\"\\t\\\\\"} 1\n").unwrap(),
            [parsed("a", &[("b", "x\ny"), ("c", "\\t\\")], 1.0, None)]
        );
        assert_eq!(text(b"a 1 007\n").unwrap(), [parsed("a", &[], 1.0, Some(7))]);
    }

    #[test]
    fn what_2_42_refuses_is_refused() {
        for (bad, error) in [
            (&b"a 1\r\n"[..], "strconv.ParseFloat: parsing \"1\\r\": invalid syntax"),
            (b"a 1e309\n", "strconv.ParseFloat: parsing \"1e309\": value out of range"),
            (b"a -nan\n", "strconv.ParseFloat: parsing \"-nan\": invalid syntax"),
            (b"a 1 -5\n", "expected timestamp or new record, got \"INVALID\""),
            (b"a 1 1.5\n", "expected next entry after timestamp, got \"INVALID\""),
            (b"a 1 9223372036854775808\n", "strconv.ParseInt: parsing \"9223372036854775808\": value out of range"),
            (b"a 1 {\n", "expected timestamp or new record, got \"INVALID\""),
            (b"a{b=\"\\\n\"} 1\n", "expected label value, got \"INVALID\""),
            (b"a{b=\"c\",,} 1\n", "expected label name, got \"COMMA\""),
            (b"a{b=\"c\"\n} 1\n", "expected label name, got \"INVALID\""),
            (b"a{b:c=\"d\"} 1\n", "expected equal, got \"INVALID\""),
            (b"a{} {} 1\n", "expected value after metric, got \"INVALID\""),
            (b"\r\n", "\"INVALID\" is not a valid start token"),
            (b"\0", "\"INVALID\" is not a valid start token"),
            (b"<html>\n", "\"INVALID\" is not a valid start token"),
        ] {
            assert_eq!(text(bad), Err(error.to_owned()), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(text(b"a 1 9223372036854775807\n").unwrap()[0].timestamp_ms, Some(i64::MAX));
    }
}
