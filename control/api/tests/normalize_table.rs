//! Table tests of `normalize_path` under Istio's four modes, with the
//! classic bypass tricks. istio.io, "Security best practices", path
//! normalization: BASE "follows RFC 3986 with extra normalization to convert
//! backslashes to forward slashes", MERGE_SLASHES "Slashes are merged after
//! the BASE normalization", DECODE_AND_MERGE_SLASHES "Percent-encoded slash
//! and backslash characters (%2F, %2f, %5C and %5c) are decoded to / or \,
//! before the MERGE_SLASHES normalization".
use palisade_api::PathNormalization::{self, Base, DecodeAndMergeSlashes, MergeSlashes, None};
use palisade_api::normalize::{PathError, normalize_path};

const MODES: [PathNormalization; 4] = [None, Base, MergeSlashes, DecodeAndMergeSlashes];

/// (input, [NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES])
const TABLE: &[(&str, [&str; 4])] = &[
    (
        "/public/../admin",
        ["/public/../admin", "/admin", "/admin", "/admin"],
    ),
    ("//admin", ["//admin", "//admin", "/admin", "/admin"]),
    (
        "/%2e%2e/admin",
        ["/%2e%2e/admin", "/admin", "/admin", "/admin"],
    ),
    (
        "/public/%2E%2e/admin",
        ["/public/%2E%2e/admin", "/admin", "/admin", "/admin"],
    ),
    (
        "/admin%2Fx",
        ["/admin%2Fx", "/admin%2Fx", "/admin%2Fx", "/admin/x"],
    ),
    (
        "/admin%2fx",
        ["/admin%2fx", "/admin%2fx", "/admin%2fx", "/admin/x"],
    ),
    ("/Admin", ["/Admin", "/Admin", "/Admin", "/Admin"]),
    ("/a/./b", ["/a/./b", "/a/b", "/a/b", "/a/b"]),
    ("/..", ["/..", "/", "/", "/"]),
    (
        "/../../etc/passwd",
        [
            "/../../etc/passwd",
            "/etc/passwd",
            "/etc/passwd",
            "/etc/passwd",
        ],
    ),
    ("/%2F", ["/%2F", "/%2F", "/%2F", "/"]),
    (
        "/%2f%2fadmin",
        ["/%2f%2fadmin", "/%2f%2fadmin", "/%2f%2fadmin", "/admin"],
    ),
    // Backslash: BASE converts it; DECODE also decodes %5C first.
    (
        "/a\\..\\admin",
        ["/a\\..\\admin", "/admin", "/admin", "/admin"],
    ),
    (
        "/a%5C..%5Cadmin",
        [
            "/a%5C..%5Cadmin",
            "/a%5C..%5Cadmin",
            "/a%5C..%5Cadmin",
            "/admin",
        ],
    ),
    (
        "/public/..%2Fadmin",
        [
            "/public/..%2Fadmin",
            "/public/..%2Fadmin",
            "/public/..%2Fadmin",
            "/admin",
        ],
    ),
    // "normalization happens only once, no double decoding"
    ("/a%252F", ["/a%252F", "/a%252F", "/a%252F", "/a%252F"]),
    (
        "/a%252e%252e/b",
        [
            "/a%252e%252e/b",
            "/a%252e%252e/b",
            "/a%252e%252e/b",
            "/a%252e%252e/b",
        ],
    ),
    // Unreserved characters are decoded, others are kept as sent (Envoy
    // copies them exactly, hex case included).
    ("/%61dmin", ["/%61dmin", "/admin", "/admin", "/admin"]),
    ("/a%3ab", ["/a%3ab", "/a%3ab", "/a%3ab", "/a%3ab"]),
    (
        "/caf%c3%a9",
        ["/caf%c3%a9", "/caf%c3%a9", "/caf%c3%a9", "/caf%c3%a9"],
    ),
    // RFC 3986 5.2.4 trailing segments.
    ("/a/b/..", ["/a/b/..", "/a/", "/a/", "/a/"]),
    ("/a/.", ["/a/.", "/a/", "/a/", "/a/"]),
    ("/a//../b", ["/a//../b", "/a/b", "/a/b", "/a/b"]),
    ("/", ["/", "/", "/", "/"]),
    ("/a/", ["/a/", "/a/", "/a/", "/a/"]),
    ("/a//b///", ["/a//b///", "/a//b///", "/a/b/", "/a/b/"]),
    // Characters a canonical path never carries raw are escaped.
    ("/a\"b", ["/a\"b", "/a%22b", "/a%22b", "/a%22b"]),
    ("/a%22b", ["/a%22b", "/a%22b", "/a%22b", "/a%22b"]),
];

#[test]
fn tricks_under_each_mode() {
    for (input, expected) in TABLE {
        for (mode, want) in MODES.iter().zip(expected) {
            let got = normalize_path(input, *mode)
                .unwrap_or_else(|e| panic!("{input:?} under {mode:?}: {e}"));
            assert_eq!(got.path(), *want, "{input:?} under {mode:?}");
            assert_eq!(got.query(), Option::None, "{input:?}");
        }
    }
}

#[test]
fn query_is_kept_but_not_matched() {
    // Istio: "authorization policy will remove anything after the question
    // mark (?) when comparing with the path. Note the backend application
    // will still see the query."
    for mode in MODES {
        let n = normalize_path("/a?x=1&y=/../z", mode).unwrap();
        assert_eq!(n.path(), "/a");
        assert_eq!(n.query(), Some("x=1&y=/../z"));
        assert_eq!(n.path_and_query(), "/a?x=1&y=/../z");
    }
    let n = normalize_path("/public/../admin?", Base).unwrap();
    assert_eq!(n.path(), "/admin");
    assert_eq!(n.query(), Some(""));
    assert_eq!(n.path_and_query(), "/admin?");
    // The forwarded target carries the normalized path.
    let n = normalize_path("/x/%2e%2e/admin?q=%2e", DecodeAndMergeSlashes).unwrap();
    assert_eq!(n.path_and_query(), "/admin?q=%2e");
}

#[test]
fn case_is_preserved() {
    for mode in MODES {
        assert_ne!(
            normalize_path("/Admin", mode).unwrap().path(),
            normalize_path("/admin", mode).unwrap().path()
        );
    }
}

#[test]
fn unsafe_paths_are_refused_in_every_mode() {
    type Expect = fn(&PathError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("", |e| matches!(e, PathError::Empty)),
        ("admin", |e| matches!(e, PathError::NotOriginForm(_))),
        ("*", |e| matches!(e, PathError::NotOriginForm(_))),
        ("http://example.com/admin", |e| {
            matches!(e, PathError::NotOriginForm(_))
        }),
        ("?a=b", |e| matches!(e, PathError::NotOriginForm(_))),
        ("/a%00", |e| {
            matches!(e, PathError::EncodedNul { offset: 2 })
        }),
        ("/admin%00.html", |e| {
            matches!(e, PathError::EncodedNul { .. })
        }),
        ("/a%zz", |e| {
            matches!(e, PathError::InvalidPercentEncoding { offset: 2 })
        }),
        ("/a%2", |e| {
            matches!(e, PathError::InvalidPercentEncoding { .. })
        }),
        ("/a%", |e| {
            matches!(e, PathError::InvalidPercentEncoding { .. })
        }),
        ("/a%%32%65", |e| {
            matches!(e, PathError::InvalidPercentEncoding { .. })
        }),
        ("/a b", |e| {
            matches!(e, PathError::ForbiddenByte { byte: b' ', .. })
        }),
        ("/a\tb", |e| {
            matches!(e, PathError::ForbiddenByte { byte: b'\t', .. })
        }),
        ("/a\0b", |e| {
            matches!(e, PathError::ForbiddenByte { byte: 0, .. })
        }),
        ("/a#frag", |e| {
            matches!(e, PathError::ForbiddenByte { byte: b'#', .. })
        }),
        ("/a?b#c", |e| {
            matches!(e, PathError::ForbiddenByte { offset: 4, .. })
        }),
        ("/a?b c", |e| {
            matches!(e, PathError::ForbiddenByte { byte: b' ', .. })
        }),
        ("/caf\u{e9}", |e| {
            matches!(e, PathError::ForbiddenByte { .. })
        }),
    ];
    for (input, expected) in cases {
        for mode in MODES {
            match normalize_path(input, mode) {
                Ok(n) => panic!("{input:?} under {mode:?} was accepted as {n}"),
                Err(e) => {
                    assert!(
                        expected(&e),
                        "{input:?} under {mode:?}: unexpected error {e:?}"
                    );
                    // Errors explain themselves.
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}

#[test]
fn encoded_control_characters_stay_encoded() {
    // Envoy refuses only %00; the others are matched and forwarded as sent
    // (istio normalization_test.go, "PercentEncoded"), so a rule on
    // `/a\r\n...` never matches the encoded form and nothing is decoded
    // into a header.
    for mode in MODES {
        for path in ["/a%0d%0aSet-Cookie:x", "/a%7f", "/a%1F", "/a%01"] {
            assert_eq!(normalize_path(path, mode).unwrap().path(), path, "{mode:?}");
        }
    }
}

#[test]
fn percent_in_query_is_not_validated_as_path() {
    // The query is forwarded as sent; only raw bytes are checked there.
    let n = normalize_path("/a?x=%zz", Base).unwrap();
    assert_eq!(n.query(), Some("x=%zz"));
}
