//! go-yaml v2's reading of a plain scalar (goyaml.v2/resolve.go, as
//! vendored by sigs.k8s.io/yaml) and `YAMLToJSON`'s spelling of a
//! non-string mapping key (sigs.k8s.io/yaml yaml.go,
//! `convertToJSONableObject`).

/// What go-yaml v2 makes of a plain scalar (resolve.go, `resolve` with no
/// tag). Timestamps need no case of their own: go-yaml hands them to an
/// `interface{}` as the string they were, and none of them reads as a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str,
}

pub(crate) fn resolve(s: &str) -> Resolved {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match s.as_bytes().first() {
        Some(b'.') => match s.parse::<f64>() {
            Ok(f) => Resolved::Float(f),
            Err(_) => Resolved::Str,
        },
        Some(b'0'..=b'9' | b'+' | b'-') => {
            let plain = s.replace('_', "");
            if let Some(r) = go_parse_int(&plain) {
                return r;
            }
            if yaml_style_float(&plain)
                && let Ok(f) = plain.parse::<f64>()
            {
                return Resolved::Float(f);
            }
            Resolved::Str
        }
        _ => Resolved::Str,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: an
/// optional sign (ParseInt only), then `0x`, `0o`, `0b` or a bare leading
/// `0` (octal) for the base. A well-formed number beyond 64 bits is still a
/// number to go-yaml (a `big.Int`): it is given here as a float.
fn go_parse_int(s: &str) -> Option<Resolved> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let Ok(magnitude) = u128::from_str_radix(digits, radix) else {
        let big = if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return Some(Resolved::Float(big));
    };
    if magnitude > u128::from(u64::MAX) {
        let f = magnitude as f64;
        return Some(Resolved::Float(if neg { -f } else { f }));
    }
    let signed = if neg {
        -(magnitude as i128)
    } else {
        magnitude as i128
    };
    Some(if let Ok(i) = i64::try_from(signed) {
        Resolved::Int(i)
    } else if let (false, Ok(u)) = (s.starts_with('+'), u64::try_from(signed)) {
        Resolved::Uint(u)
    } else {
        Resolved::Float(signed as f64)
    })
}

/// go-yaml v2's `yamlStyleFloat`:
/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A mapping key as `YAMLToJSON` writes it into JSON: booleans as
/// `true`/`false`, integers in decimal, floats as Go's
/// `FormatFloat(f, 'g', -1, 32)`. A null key has no JSON form.
pub(super) fn key_string(s: &str) -> Option<String> {
    Some(match resolve(s) {
        Resolved::Null => return None,
        Resolved::Bool(b) => b.to_string(),
        Resolved::Int(i) => i.to_string(),
        Resolved::Uint(u) => u.to_string(),
        Resolved::Float(f) => go_format_float32(f),
        Resolved::Str => s.to_string(),
    })
}

/// `strconv.FormatFloat(f, 'g', -1, 32)`, with go-yaml's spelling of the
/// infinities and NaN: the shortest digits of the `float32`, in exponent
/// form when the exponent is below -4 or at least 6 (`%g`'s rule for the
/// shortest precision).
fn go_format_float32(f: f64) -> String {
    let f = f as f32;
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let sci = format!("{f:e}"); // e.g. "1.234567e6", "-1e-5"
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        f.to_string()
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// goyaml.v2/resolve.go's table and number rules, and the cases of
    /// goyaml.v2/decode_test.go that decode into `interface{}`.
    #[test]
    fn resolves_as_go_yaml_v2() {
        use Resolved::*;
        let cases: &[(&str, Resolved)] = &[
            ("yes", Bool(true)),
            ("Y", Bool(true)),
            ("on", Bool(true)),
            ("TRUE", Bool(true)),
            ("n", Bool(false)),
            ("Off", Bool(false)),
            ("NO", Bool(false)),
            ("nO", Str),
            ("~", Null),
            ("", Null),
            ("1", Int(1)),
            ("+1", Int(1)),
            ("-1", Int(-1)),
            ("1_000", Int(1000)),
            ("017", Int(15)),
            ("0o17", Int(15)),
            ("0x1F", Int(31)),
            ("0b101", Int(5)),
            ("-0b101", Int(-5)),
            ("18446744073709551615", Uint(u64::MAX)),
            ("1.10", Float(1.1)),
            ("1.", Float(1.0)),
            (".5", Float(0.5)),
            ("1e3", Float(1000.0)),
            ("08", Float(8.0)),
            ("+.inf", Float(f64::INFINITY)),
            ("0x", Str),
            ("1.2.3", Str),
            ("2001-12-14", Str),
            ("v1", Str),
            ("nan", Str),
            ("-", Str),
            ("<<", Str),
        ];
        for (text, want) in cases {
            assert_eq!(resolve(text), *want, "{text:?}");
        }
    }

    #[test]
    fn keys_as_yaml_to_json_writes_them() {
        for (text, want) in [
            ("yes", "true"),
            ("off", "false"),
            ("0x10", "16"),
            ("1.10", "1.1"),
            ("1000000.0", "1e+06"),
            (".inf", ".inf"),
            ("app", "app"),
        ] {
            assert_eq!(key_string(text).as_deref(), Some(want), "{text:?}");
        }
        assert_eq!(key_string("~"), None);
    }
}
