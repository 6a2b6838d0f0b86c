//! Base64 as SPIFFE bundles carry it, read the way go-spiffe (through
//! go-jose) reads it, so a bundle SPIRE or any Go producer accepts is
//! accepted here too.
//!
//! - `x5c` certificates: Go's `base64.StdEncoding` (RFC 4648 §4 alphabet,
//!   padding required). Line breaks are ignored, as Go's decoder ignores
//!   `\r` and `\n`; bits past the last whole byte are not checked (Go's
//!   non-strict mode).
//! - Key parameters (`x`, `y`, `n`, `e`): go-jose's `base64URLDecode`,
//!   which drops trailing `=` and then reads unpadded base64url
//!   (RFC 4648 §5), again ignoring line breaks and trailing bits.
//!
//! Everything written uses the canonical forms (padded standard, unpadded
//! URL-safe).
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

const GO_RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Go's decoders skip `\r` and `\n` wherever they appear.
fn without_line_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], "").into()
    } else {
        text.into()
    }
}

/// An `x5c` value, as `base64.StdEncoding.DecodeString` reads it.
pub fn decode_standard(text: &str) -> Option<Vec<u8>> {
    GO_STD.decode(without_line_breaks(text).as_bytes()).ok()
}

/// A JWK key parameter, as go-jose's `base64URLDecode` reads it.
pub fn decode_url_safe(text: &str) -> Option<Vec<u8>> {
    let text = without_line_breaks(text);
    GO_RAW_URL.decode(text.trim_end_matches('=')).ok()
}

/// An `x5t` or `x5t#S256` thumbprint, as go-jose reads it: Go's
/// `base64.RawURLEncoding` (no padding allowed, line breaks ignored).
pub fn decode_raw_url(text: &str) -> Option<Vec<u8>> {
    GO_RAW_URL.decode(without_line_breaks(text).as_bytes()).ok()
}

/// Padded standard base64 (PEM bodies, `x5c`).
pub fn encode_standard(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Unpadded base64url (JWK key parameters).
pub fn encode_url_safe(data: &[u8]) -> String {
    GO_RAW_URL.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_reads_what_go_std_encoding_reads() {
        let ok: &[(&str, &[u8])] = &[
            ("", b""),
            ("Zm9v", b"foo"),
            ("Zm8=", b"fo"),
            ("Zg==", b"f"),
            // Line breaks anywhere are skipped.
            ("Zm\r\n9v\n", b"foo"),
            ("\nZg=\r\n=", b"f"),
            // Non-zero bits past the last byte: Go's non-strict mode.
            ("Zh==", b"f"),
            ("Zm9=", b"fo"),
            ("+/+/", &[0xfb, 0xff, 0xbf]),
        ];
        for (text, want) in ok {
            assert_eq!(decode_standard(text).as_deref(), Some(*want), "{text:?}");
        }
        for bad in [
            "Zg",        // padding required
            "Zg=",       // incomplete padding
            "Zg===",     // too much
            "Zm9v Zm9v", // spaces are not skipped (only \r and \n)
            "Zm9v\t",
            "Zg==Zg==", // data after padding
            "Z===",
            "-_-_", // URL-safe alphabet
            "Zm9",
        ] {
            assert_eq!(decode_standard(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn url_safe_reads_what_go_jose_reads() {
        let ok: &[(&str, &[u8])] = &[
            ("Zm9v", b"foo"),
            ("Zm8", b"fo"),
            ("Zg", b"f"),
            // go-jose trims trailing '=' first, however many.
            ("Zg==", b"f"),
            ("Zg=", b"f"),
            ("Zm9v=", b"foo"),
            ("-_-_", &[0xfb, 0xff, 0xbf]),
            ("Zh", b"f"),
            ("Z\ng", b"f"),
        ];
        for (text, want) in ok {
            assert_eq!(decode_url_safe(text).as_deref(), Some(*want), "{text:?}");
        }
        for bad in ["Z", "Zm9vZ", "+/+/", "Zg=g", "Zg Zg", "Z==="] {
            assert_eq!(decode_url_safe(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        for n in 0..64usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_standard(&encode_standard(&data)), Some(data.clone()));
            assert_eq!(decode_url_safe(&encode_url_safe(&data)), Some(data));
        }
        assert_eq!(encode_standard(b"f"), "Zg==");
        assert_eq!(encode_url_safe(&[0xfb, 0xff]), "-_8");
    }
}
