//! Properties of the parser, with fixed case counts so the suite stays quick:
//! - any bytes, and node_exporter's body damaged anywhere, never panic, in either format, and what comes out is
//!   never bigger than what went in;
//! - samples written by roster's own encoder ([`encode`](super::encode)), with every escape, quoted UTF-8 names,
//!   NaN, infinities, subnormals and timestamps, read back equal;
//! - families written by `prometheus-client`'s OpenMetrics encoder, the published oracle, read back equal.

use std::collections::BTreeMap;

use prometheus_client::{
    encoding::text::encode as client_encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use proptest::{collection::vec, prelude::*, sample::select};

use super::{Format, NORMAL_NAN, Parsed, encode::encode, parse};

const NODE_EXPORTER: &[u8] = include_bytes!("../../../testdata/exposition/node_exporter-1.5.0-e2e-output.txt");

/// The bytes that steer the lexers, so that random bodies get past the first token.
const SYNTAX: &[u8] = b"{}=,\"\\# \t\n\r\0.+-:_eEaInfNTYPHLUOx019\xc3\xa9\xff";

fn format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Text004), Just(Format::OpenMetrics)]
}

/// Output strings are made of input bytes, and unescaping only shrinks them.
fn output_bytes(samples: &[Parsed]) -> usize {
    samples.iter().map(|s| s.name.len() + s.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()).sum()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        1 => "\\PC{1,8}",
        1 => "[a-z.\"\\\\\n é🦀]{1,8}",
    ]
}

const LABEL_IDENTIFIER: &str = "[a-zA-Z_][a-zA-Z0-9_]{0,8}";

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![3 => LABEL_IDENTIFIER, 1 => "[a-z.\"\\\\\n é🦀]{1,8}"]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9 ,={}]{0,10}", "[\"\\\\\n\t\\x00a-zé🦀]{0,10}", "\\PC{0,10}"]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE / 4.0),
        (-1e6..1e6_f64),
    ]
}

/// Distinct label names, not `__name__`, in generated order.
fn labels(names: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<(String, String)>> {
    vec((names, label_value()), 0..5).prop_map(|pairs| {
        let mut seen = vec!["__name__".to_owned()];
        pairs
            .into_iter()
            .filter(|(name, _)| {
                let new = !seen.contains(name);
                seen.push(name.clone());
                new
            })
            .collect()
    })
}

fn model(format: Format) -> impl Strategy<Value = Vec<Parsed<'static>>> {
    // Text timestamps are unsigned ms; OpenMetrics ones are seconds, here within some 30 000 years of 1970.
    let timestamp = match format {
        Format::Text004 => (0..=i64::MAX).boxed(),
        Format::OpenMetrics => (-1_000_000_000_000_000..1_000_000_000_000_000_i64).boxed(),
    };
    let sample = (name(), labels(label_name()), value(), proptest::option::of(timestamp)).prop_map(
        |(name, labels, value, timestamp_ms)| Parsed {
            name: name.into(),
            labels: labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            value,
            timestamp_ms,
        },
    );
    vec(sample, 0..12)
}

/// An owned sample of `name` with `labels`, without a timestamp.
fn parsed_owned(name: &str, labels: &[(String, String)], value: f64) -> Parsed<'static> {
    Parsed {
        name: name.to_owned().into(),
        labels: labels.iter().map(|(k, v)| (k.clone().into(), v.clone().into())).collect(),
        value,
        timestamp_ms: None,
    }
}

/// What the parser must give back for `model`: empty values dropped, NaN normal.
fn expected<'a>(model: &[Parsed<'a>]) -> Vec<Parsed<'a>> {
    model
        .iter()
        .map(|sample| Parsed {
            name: sample.name.clone(),
            labels: sample.labels.iter().filter(|(_, v)| !v.is_empty()).cloned().collect(),
            value: if sample.value.is_nan() { f64::from_bits(NORMAL_NAN) } else { sample.value },
            timestamp_ms: sample.timestamp_ms,
        })
        .collect()
}

/// OpenMetrics timestamps go through `int64(seconds * 1000)`, which may land one ms below (as in 2.42).
fn within_a_ms(got: &[Parsed], want: &[Parsed]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            let ts = match (g.timestamp_ms, w.timestamp_ms) {
                (Some(g), Some(w)) => (g - w).abs() <= 1,
                (g, w) => g == w,
            };
            ts && Parsed { timestamp_ms: w.timestamp_ms, ..g.clone() } == *w
        })
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize, usize),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let at = 0..NODE_EXPORTER.len();
    let one = prop_oneof![
        (at.clone(), select(SYNTAX)).prop_map(|(i, b)| Damage::Flip(i, b)),
        (at.clone(), vec(select(SYNTAX), 1..8)).prop_map(|(i, bytes)| Damage::Insert(i, bytes)),
        (at, 1..64_usize).prop_map(|(i, n)| Damage::Cut(i, n)),
    ];
    vec(one, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_never_panic_and_never_grow(
        body in prop_oneof![vec(any::<u8>(), 0..=64 * 1024), vec(select(SYNTAX), 0..=4096)],
        format in format(),
    ) {
        if let Ok(samples) = parse(&body, format) {
            prop_assert!(output_bytes(&samples) <= body.len());
            prop_assert!(samples.len() <= body.len() / 2);
        }
    }

    #[test]
    fn a_damaged_real_body_never_panics(damage in damage(), format in format()) {
        let mut body = NODE_EXPORTER.to_vec();
        for d in damage {
            let len = body.len();
            match d {
                Damage::Flip(i, b) => body[i.min(len - 1)] = b,
                Damage::Insert(i, bytes) => drop(body.splice(i.min(len)..i.min(len), bytes)),
                Damage::Cut(i, n) => drop(body.drain(i.min(len)..(i + n).min(len))),
            }
        }
        if let Ok(samples) = parse(&body, format) {
            prop_assert!(output_bytes(&samples) <= body.len());
        }
    }

    #[test]
    fn what_roster_encodes_as_text_reads_back_equal(model in model(Format::Text004)) {
        let body = encode(&model, Format::Text004);
        prop_assert_eq!(parse(body.as_bytes(), Format::Text004).map_err(|e| e.to_string()), Ok(expected(&model)), "{}", body);
    }

    #[test]
    fn what_roster_encodes_as_openmetrics_reads_back_equal(model in model(Format::OpenMetrics)) {
        let body = encode(&model, Format::OpenMetrics);
        let got = parse(body.as_bytes(), Format::OpenMetrics).map_err(|e| e.to_string());
        prop_assert!(got.as_ref().is_ok_and(|got| within_a_ms(got, &expected(&model))), "{body}\n{got:?}");
    }

    #[test]
    fn what_prometheus_client_encodes_reads_back_equal(
        families in vec(
            (
                "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
                any::<bool>(),
                vec((labels(LABEL_IDENTIFIER), value()), 0..6),
            ),
            0..6,
        ),
    ) {
        let mut registry = Registry::default();
        let mut want = Vec::new();
        for (name, counter, series) in families {
            let exposed = if counter { format!("{name}_total") } else { name.clone() };
            // A label set given twice is one series; its last value stands.
            let series: BTreeMap<_, _> = series.into_iter().collect();
            if counter {
                let family = Family::<Vec<(String, String)>, Counter<f64, std::sync::atomic::AtomicU64>>::default();
                for (labels, value) in &series {
                    // A counter only goes up from zero.
                    let value = if value.is_finite() { value.abs() } else { 1.0 };
                    family.get_or_create(labels).inc_by(value);
                    want.push(parsed_owned(&exposed, labels, value));
                }
                registry.register(name, "A counter.", family);
            } else {
                let family = Family::<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
                for (labels, value) in &series {
                    family.get_or_create(labels).set(*value);
                    want.push(parsed_owned(&exposed, labels, *value));
                }
                registry.register(name, "A gauge.", family);
            }
        }
        let mut body = String::new();
        client_encode(&mut body, &registry).expect("writing to a String cannot fail");
        let mut got = parse(body.as_bytes(), Format::OpenMetrics).map_err(|e| e.to_string());
        // A family's series come out in hash order.
        let key = |s: &Parsed<'_>| {
            let labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            (s.name.to_string(), labels, s.value.to_bits())
        };
        if let Ok(got) = got.as_mut() {
            got.sort_by_key(key);
        }
        let mut want = expected(&want);
        want.sort_by_key(key);
        prop_assert_eq!(got, Ok(want), "{}", body);
    }
}
