//! The test oracle for escapes: samples written in either format, every name that is no identifier quoted,
//! every label value escaped (`\\`, `\"`, `\n`), every value spelt so that Go's `ParseFloat` reads it back
//! exactly. `prometheus-client`, the other oracle, cannot write quoted names.

use std::fmt::Write as _;

use super::{Format, Parsed};

/// `samples` as one body of `format`, in order.
pub(super) fn encode(samples: &[Parsed], format: Format) -> String {
    let mut out = String::new();
    for sample in samples {
        let bare_name = is_identifier(&sample.name, true);
        let mut items = Vec::with_capacity(sample.labels.len() + 1);
        if bare_name {
            out.push_str(&sample.name);
        } else {
            items.push(quote(&sample.name));
        }
        for (name, value) in &sample.labels {
            let name = if is_identifier(name, false) { name.to_string() } else { quote(name) };
            items.push(format!("{name}={}", quote(value)));
        }
        if !items.is_empty() {
            let _ = write!(out, "{{{}}}", items.join(","));
        }
        let _ = write!(out, " {}", value(sample.value));
        match (sample.timestamp_ms, format) {
            (None, _) => {}
            (Some(ms), Format::Text004) => {
                let _ = write!(out, " {ms}");
            }
            (Some(ms), Format::OpenMetrics) => {
                let sign = if ms < 0 { "-" } else { "" };
                let _ = write!(out, " {sign}{}.{:03}", ms.unsigned_abs() / 1000, ms.unsigned_abs() % 1000);
            }
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or, without colons, a label name.
fn is_identifier(name: &str, colons: bool) -> bool {
    let allowed = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    name.chars().next().is_some_and(allowed) && name.chars().all(|c| allowed(c) || c.is_ascii_digit())
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // Rust's shortest round-trip spelling (`1e300`, `-0.0`, `5e-324`), which Go reads back to the same bits.
        format!("{v:?}")
    }
}
