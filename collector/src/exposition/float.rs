//! Numbers as 2.42 reads them (`parseFloat` in `model/textparse/promparse.go`): Go's `strconv.ParseFloat(s, 64)`
//! after refusing `p`, `P` and `_` ("Keep to pre-Go 1.13 float formats"), so no hex floats and no digit
//! separators.
//!
//! Rust's `f64::from_str` takes the same spellings (an optional sign, digits with an optional `.` and exponent,
//! `inf`, `infinity` and `nan` in any case) but for two, which are refused here as Go refuses them:
//! - a sign before `nan` (`strconv.special` lets a sign through only to `inf`);
//! - a finite spelling beyond `f64`'s range, such as `1e309`: Go's range error, where Rust gives infinity.

/// `token` as a float, or 2.42's error.
pub(super) fn parse(token: &[u8]) -> Result<f64, String> {
    if token.iter().any(|b| matches!(b, b'p' | b'P' | b'_')) {
        return Err("unsupported character in float".to_owned());
    }
    let quoted = || format!("{:?}", String::from_utf8_lossy(token));
    let invalid = || format!("strconv.ParseFloat: parsing {}: invalid syntax", quoted());
    let s = std::str::from_utf8(token).map_err(|_| invalid())?;
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.len() != s.len() && unsigned.eq_ignore_ascii_case("nan") {
        return Err(invalid());
    }
    let value: f64 = s.parse().map_err(|_| invalid())?;
    if value.is_infinite() && !(unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity")) {
        return Err(format!("strconv.ParseFloat: parsing {}: value out of range", quoted()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn go_spellings_are_read() {
        for (token, expected) in [
            ("1", 1.0),
            ("-1", -1.0),
            ("+5", 5.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1e+3", 1000.0),
            ("2.5e-3", 0.0025),
            ("0042", 42.0),
            ("4.9351e-05", 4.9351e-05),
            ("7.424100000000001e-05", 7.424100000000001e-05),
            ("1.7976931348623157e308", f64::MAX),
            ("5e-324", 5e-324),
            // Underflow is no error in Go: the nearest value, zero here.
            ("1e-400", 0.0),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("inf", f64::INFINITY),
            ("INF", f64::INFINITY),
            ("infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse(token.as_bytes()).map(f64::to_bits), Ok(expected.to_bits()), "{token}");
        }
        assert_eq!(parse(b"-0").map(f64::to_bits), Ok((-0.0_f64).to_bits()));
        for nan in ["NaN", "nan", "NAN", "nAn"] {
            assert!(parse(nan.as_bytes()).is_ok_and(f64::is_nan), "{nan}");
        }
    }

    #[test]
    fn what_go_or_prometheus_refuses_is_refused() {
        for (token, error) in [
            ("1_2", "unsupported character in float"),
            ("0x1p-3", "unsupported character in float"),
            ("0x1P-3", "unsupported character in float"),
            ("1e309", "strconv.ParseFloat: parsing \"1e309\": value out of range"),
            ("-1e309", "strconv.ParseFloat: parsing \"-1e309\": value out of range"),
            ("-nan", "strconv.ParseFloat: parsing \"-nan\": invalid syntax"),
            ("+NaN", "strconv.ParseFloat: parsing \"+NaN\": invalid syntax"),
            ("true", "strconv.ParseFloat: parsing \"true\": invalid syntax"),
            ("1z", "strconv.ParseFloat: parsing \"1z\": invalid syntax"),
            ("1\t2", "strconv.ParseFloat: parsing \"1\\t2\": invalid syntax"),
            ("1\r", "strconv.ParseFloat: parsing \"1\\r\": invalid syntax"),
            ("0x10", "strconv.ParseFloat: parsing \"0x10\": invalid syntax"),
            ("", "strconv.ParseFloat: parsing \"\": invalid syntax"),
            (".", "strconv.ParseFloat: parsing \".\": invalid syntax"),
            ("1e", "strconv.ParseFloat: parsing \"1e\": invalid syntax"),
            ("infin", "strconv.ParseFloat: parsing \"infin\": invalid syntax"),
            ("Inf ", "strconv.ParseFloat: parsing \"Inf \": invalid syntax"),
        ] {
            assert_eq!(parse(token.as_bytes()), Err(error.to_owned()), "{token:?}");
        }
        assert!(parse(b"\xff").is_err());
    }
}
