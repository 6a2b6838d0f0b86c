//! Name syntax as the API server checks it (apimachinery
//! `pkg/util/validation`): qualified names (label and annotation keys),
//! label values, DNS-1123 subdomains and labels, DNS-1035 labels and
//! IANA service names (named ports).

/// How a label key (IsQualifiedName) must look, for error messages.
pub(super) const LABEL_KEY_RULE: &str = "an optional DNS subdomain prefix and '/', then 1-63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric";
/// How a label value (IsValidLabelValue) must look, for error messages.
pub(super) const LABEL_VALUE_RULE: &str =
    "empty, or 1-63 alphanumerics, '-', '_' or '.', beginning and ending with an alphanumeric";

/// IsQualifiedName: `[prefix/]name`, the prefix a DNS-1123 subdomain.
pub(super) fn valid_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => valid_dns_subdomain(prefix) && valid_label_name(name),
        None => valid_label_name(k),
    }
}

/// IsValidLabelValue: empty or a valid name part.
pub(super) fn valid_label_value(v: &str) -> bool {
    v.is_empty() || valid_label_name(v)
}

/// The name part of a qualified name: at most 63 characters,
/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn valid_label_name(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) use palisade_api::dns::{
    is_dns1123_label as valid_dns_label, is_dns1123_subdomain as valid_dns_subdomain,
};

/// IsDNS1035Label: a DNS-1123 label that begins with a letter.
pub(super) fn valid_dns1035_label(s: &str) -> bool {
    valid_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// IsValidPortName (IANA_SVC_NAME): 1-15 lowercase alphanumerics or '-',
/// at least one letter, no '-' at either end, no "--".
pub(crate) fn valid_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.chars().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        for ok in ["a", "A.b_c-D", "example.com/x", "a/b", &"x".repeat(63)] {
            assert!(valid_label_key(ok), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            "Example.com/x",
            &"x".repeat(64),
        ] {
            assert!(!valid_label_key(bad), "{bad}");
        }
        assert!(valid_label_value(""));
        assert!(!valid_label_value("a b"));
    }

    #[test]
    fn port_names() {
        for ok in ["http", "dns-tcp", "h2c", "a1", &"a".repeat(15)] {
            assert!(valid_port_name(ok), "{ok}");
        }
        for bad in ["", "80", "-a", "a-", "a--b", "Http", "a_b", &"a".repeat(16)] {
            assert!(!valid_port_name(bad), "{bad}");
        }
    }
}
