//! Istio's path normalization conformance table, case for case: istio/istio
//! `tests/integration/security/normalization_test.go` (`TestNormalization`).
//! Each case is the path a caller sends and the path the app receives under
//! the mesh's `pathNormalization` mode; `400` means the request is refused.
//!
//! One case is left out on purpose: `/app#foo` -> `/app`. Istio's echo
//! client never sends the fragment (Go's `url.Parse` keeps it aside), so the
//! app sees `/app` whatever the proxy does; a fragment that does reach the
//! proxy is refused, as Envoy does by default since 1.16.5
//! (`http_reject_path_with_fragment`, CVE-2021-32779).
use palisade_api::PathNormalization::{self, Base, DecodeAndMergeSlashes, MergeSlashes, None};
use palisade_api::normalize::normalize_path;

fn check(mode: PathNormalization, cases: &[(&str, &str)]) {
    for (input, want) in cases {
        let got = match normalize_path(input, mode) {
            Ok(n) => n.path_and_query(),
            Err(_) => "400".to_owned(),
        };
        assert_eq!(got, *want, "{input:?} under {mode:?}");
    }
}

#[test]
fn none() {
    check(
        None,
        &[
            ("/", "/"),
            ("/app/", "/app/"),
            ("/app/../admin", "/app/../admin"),
            ("/app", "/app"),
            ("/app//", "/app//"),
            ("/app/%2f", "/app/%2f"),
            ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz%30..//abc"),
            ("/app/%2E./admin", "/app/%2E./admin"),
            (r"/app\admin", r"/app\admin"),
            (r"/app/\/\/\admin", r"/app/\/\/\admin"),
            (r"/%2Fapp%5cadmin%5Cabc", r"/%2Fapp%5cadmin%5Cabc"),
            (
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
            ),
            ("/app//../admin", "/app//../admin"),
            ("/app//../../admin", "/app//../../admin"),
        ],
    );
}

#[test]
fn base() {
    check(
        Base,
        &[
            ("/", "/"),
            ("/app/", "/app/"),
            ("/app/../admin", "/admin"),
            ("/app", "/app"),
            ("/app//", "/app//"),
            ("/app/%2f", "/app/%2f"),
            ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0..//abc"),
            ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"),
            (r"/app/\/\/\admin", "/app//////admin"),
            (r"/%2Fapp%5cadmin%5Cabc", r"/%2Fapp%5cadmin%5Cabc"),
            (
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
                r"/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
            ),
            ("/app//../admin", "/app/admin"),
            ("/app//../../admin", "/admin"),
        ],
    );
}

#[test]
fn merge_slashes() {
    check(
        MergeSlashes,
        &[
            ("/", "/"),
            ("/app/", "/app/"),
            ("/app/../admin", "/admin"),
            ("/app", "/app"),
            ("/app//", "/app/"),
            ("/app/%2f", "/app/%2f"),
            ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0../abc"),
            ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"),
            (r"/app/\/\/\admin", "/app/admin"),
            (r"/%2Fapp%5cadmin%5Cabc", r"/%2Fapp%5cadmin%5Cabc"),
            (
                r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc",
                r"/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
            ),
            ("/app//../admin", "/app/admin"),
            ("/app//../../admin", "/admin"),
        ],
    );
}

#[test]
fn decode_and_merge_slashes() {
    check(
        DecodeAndMergeSlashes,
        &[
            ("/", "/"),
            ("/app/", "/app/"),
            ("/app/../admin", "/admin"),
            ("/app", "/app"),
            ("/app//", "/app/"),
            ("/app/%2f", "/app/"),
            ("/app%2f/", "/app/"),
            ("/xyz%30..//abc", "/xyz0../abc"),
            ("/app/%2E./admin", "/admin"),
            (r"/app\admin", "/app/admin"),
            (r"/app/\/\/\admin", "/app/admin"),
            (r"/%2Fapp%5cadmin%5Cabc", "/app/admin/abc"),
            (r"/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\abc", "/app/admin/abc"),
            ("/app//../admin", "/app/admin"),
            ("/app//../../admin", "/admin"),
            ("/%c0%2e%c0%2e/admin", "/%c0.%c0./admin"),
            ("/%c0%2fadmin", "/%c0/admin"),
        ],
    );
}

#[test]
fn not_normalized() {
    let kept = [
        "/0x2e0x2e/admin",
        "/0x2e0x2e0x2fadmin",
        "/0x2e0x2e0x5cadmin",
        "/0x2f0x2fadmin",
        "/0x5c0x5cadmin",
        "/%25c0%25ae%25c1%259cadmin",
        "/%25c0%25ae%25c0%25ae/admin",
        "/%25c0%25afadmin",
        "/%25c1%259cadmin",
        "/%252e%252e/admin",
        "/%252e%252e%252fadmin",
        "/%c1%9cadmin",
        "/%c0%ae%c0%ae/admin",
        "/%c0%afadmin",
        "/.../admin",
        "/..../admin",
        "/..;/admin",
        "/;/admin",
        "/admin;a=b",
        "/admin;a=b/xyz",
        "/admin,a=b/xyz",
        "/Admin",
        "/ADMIN",
    ];
    let cases: Vec<(&str, &str)> = kept.iter().map(|p| (*p, *p)).collect();
    check(DecodeAndMergeSlashes, &cases);
}

/// `/admin%XX` for every byte from 0x01 to 0xff: unreserved characters,
/// `/` and `\` (as `/`) are decoded; every other escape reaches the app as
/// sent, control characters included (only `%00` is refused, below).
#[test]
fn percent_encoded() {
    for i in 1u8..=0xff {
        let input = format!("/admin%{i:02x}");
        let decoded = i.is_ascii_alphanumeric() || matches!(i, b'-' | b'.' | b'_' | b'~');
        let want = match i {
            b'/' | b'\\' => "/admin/".to_owned(),
            _ if decoded => format!("/admin{}", char::from(i)),
            _ => input.clone(),
        };
        check(DecodeAndMergeSlashes, &[(&input, &want)]);
    }
}

#[test]
fn invalid() {
    check(DecodeAndMergeSlashes, &[("/admin%00", "400")]);
}
