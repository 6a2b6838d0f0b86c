//! DNS name syntax as Kubernetes' apimachinery checks it
//! (`pkg/util/validation`): DNS-1123 subdomains and labels. Shared by the
//! control plane's manifest loader and the config the sidecar reads.

/// IsDNS1123Subdomain: at most 253 characters, dot-separated labels of
/// lowercase alphanumerics and '-', each beginning and ending alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns1123_label_chars)
}

/// IsDNS1123Label: at most 63 lowercase alphanumerics or '-', beginning and
/// ending with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && dns1123_label_chars(s)
}

/// The characters of one label, whatever its length.
fn dns1123_label_chars(l: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge(l.chars().next())
        && edge(l.chars().last())
        && l.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
