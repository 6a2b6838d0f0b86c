//! SPIFFE ID parsing: every rule of SPIFFE-ID.md, with the character sets and
//! edge cases of go-spiffe `v2/spiffeid`.
use palisade_identity::spiffe_id::{
    MAX_SPIFFE_ID_LEN, MAX_TRUST_DOMAIN_LEN, validate_path, validate_path_segment,
};
use palisade_identity::{SpiffeId, SpiffeIdError as E, TrustDomain};

fn err(s: &str) -> E {
    SpiffeId::parse(s).unwrap_err()
}

#[test]
fn accepts_valid_ids_and_splits_them() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/web").unwrap();
    assert_eq!(id.trust_domain_str(), "cluster.local");
    assert_eq!(id.path(), "/ns/default/sa/web");
    assert_eq!(id.ns_sa(), Some(("default", "web")));
    assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/web");
    // A trust domain ID (no path) is a valid SPIFFE ID.
    let td = SpiffeId::parse("spiffe://a-b_c.9").unwrap();
    assert_eq!(td.path(), "");
    // Path characters: letters of both cases, digits, '.', '-', '_'.
    SpiffeId::parse("spiffe://td/AZaz09.-_/x..y/.hidden").unwrap();
}

#[test]
fn rejects_empty() {
    assert_eq!(err(""), E::Empty);
}

#[test]
fn rejects_wrong_or_missing_scheme() {
    // "Valid SPIFFE IDs MUST use the `spiffe` scheme" (SPIFFE-ID 2)
    for s in [
        "http://td/x",
        "spiffe:/td/x",
        "spiffe:td/x",
        "td/x",
        "SPIFFE://td/x",
        "spiffe//td",
    ] {
        assert_eq!(err(s), E::WrongScheme, "{s}");
    }
}

#[test]
fn rejects_query_fragment_and_percent_encoding() {
    // "... and MUST NOT include a query or fragment component" (SPIFFE-ID 2)
    assert_eq!(err("spiffe://td/path?x=1"), E::HasQuery);
    assert_eq!(err("spiffe://td/path#frag"), E::HasFragment);
    assert_eq!(err("spiffe://td/pa%41th"), E::PercentEncoded);
    // In the trust domain they are trust domain characters, as in go-spiffe
    // TestFromString "reject bad trustdomain char" and "reject percent encoding".
    assert_eq!(err("spiffe://td?x"), E::TrustDomainChar { ch: '?' });
    assert_eq!(err("spiffe://td#x/path"), E::TrustDomainChar { ch: '#' });
    assert_eq!(err("spiffe://t%41d/path"), E::TrustDomainChar { ch: '%' });
}

#[test]
fn rejects_user_info_and_port() {
    // "The `userinfo` and `port` parts of the authority component MUST NOT be
    // set, and the `:` delimiter MUST NOT be present." (SPIFFE-ID 2.1)
    assert_eq!(err("spiffe://user@td/path"), E::HasUserInfo);
    assert_eq!(err("spiffe://user:pw@td/path"), E::HasUserInfo);
    assert_eq!(err("spiffe://td:8080/path"), E::HasPort);
    assert_eq!(err("spiffe://td:/path"), E::HasPort);
}

#[test]
fn rejects_missing_trust_domain() {
    assert_eq!(err("spiffe://"), E::MissingTrustDomain);
    assert_eq!(err("spiffe:///path"), E::MissingTrustDomain);
}

#[test]
fn rejects_bad_trust_domain_characters() {
    // go-spiffe: "trust domain characters are limited to lowercase letters,
    // numbers, dots, dashes, and underscores"
    for (s, ch) in [
        ("spiffe://Td/x", 'T'),
        ("spiffe://t d/x", ' '),
        ("spiffe://t$d/x", '$'),
        ("spiffe://tñ/x", 'ñ'),
        ("spiffe://t+d", '+'),
    ] {
        assert_eq!(err(s), E::TrustDomainChar { ch }, "{s}");
    }
}

#[test]
fn rejects_bad_path_characters() {
    // go-spiffe: "path segment characters are limited to letters, numbers, dots,
    // dashes, and underscores"
    for (s, ch) in [
        ("spiffe://td/pa:th", ':'),
        ("spiffe://td/pa@th", '@'),
        ("spiffe://td/p$th", '$'),
        ("spiffe://td/p th", ' '),
        ("spiffe://td/pä", 'ä'),
        ("spiffe://td/x/y*", '*'),
    ] {
        assert_eq!(err(s), E::PathChar { ch }, "{s}");
    }
}

#[test]
fn rejects_empty_dot_and_trailing_segments() {
    assert_eq!(err("spiffe://td//path"), E::EmptySegment);
    assert_eq!(err("spiffe://td/a//b"), E::EmptySegment);
    assert_eq!(err("spiffe://td/."), E::DotSegment);
    assert_eq!(err("spiffe://td/a/../b"), E::DotSegment);
    assert_eq!(err("spiffe://td/a/./b"), E::DotSegment);
    // "paths SHOULD NOT end with a trailing `/`" (SPIFFE-ID 2.2); go-spiffe
    // rejects it, and so do we.
    assert_eq!(err("spiffe://td/"), E::TrailingSlash);
    assert_eq!(err("spiffe://td/a/"), E::TrailingSlash);
}

#[test]
fn enforces_length_limits() {
    // "SPIFFE implementations MUST support SPIFFE URIs up to 2048 bytes" and the
    // trust domain "is 255 bytes" at most (SPIFFE-ID 2.3).
    let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    SpiffeId::parse(&format!("spiffe://{td}/x")).unwrap();
    let long_td = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    assert_eq!(
        err(&format!("spiffe://{long_td}/x")),
        E::TrustDomainTooLong { len: 256 }
    );
    let prefix = "spiffe://td/";
    let exact = format!("{prefix}{}", "p".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
    assert_eq!(exact.len(), 2048);
    SpiffeId::parse(&exact).unwrap();
    let over = format!("{exact}p");
    assert_eq!(err(&over), E::TooLong { len: 2049 });
}

#[test]
fn ns_sa_helpers_build_and_recognise_the_kubernetes_form() {
    let td = TrustDomain::new("cluster.local").unwrap();
    let id = SpiffeId::from_ns_sa(&td, "prod", "api-server").unwrap();
    assert_eq!(id.as_str(), "spiffe://cluster.local/ns/prod/sa/api-server");
    assert_eq!(id.ns_sa(), Some(("prod", "api-server")));
    assert_eq!(
        SpiffeId::from_ns_sa(&td, "a/b", "x").unwrap_err(),
        E::PathChar { ch: '/' }
    );
    assert_eq!(
        SpiffeId::from_ns_sa(&td, "", "x").unwrap_err(),
        E::EmptySegment
    );
    assert_eq!(
        SpiffeId::from_ns_sa(&td, "..", "x").unwrap_err(),
        E::DotSegment
    );
    for not_k8s in [
        "spiffe://td/ns/a/sa",
        "spiffe://td/ns/a/sa/b/c",
        "spiffe://td/ns/a/xx/b",
        "spiffe://td",
    ] {
        assert_eq!(SpiffeId::parse(not_k8s).unwrap().ns_sa(), None, "{not_k8s}");
    }
}

#[test]
fn trust_domain_accepts_name_or_id_form() {
    assert_eq!(
        TrustDomain::new("example.org").unwrap().as_str(),
        "example.org"
    );
    assert_eq!(
        TrustDomain::new("spiffe://example.org").unwrap().as_str(),
        "example.org"
    );
    assert_eq!(TrustDomain::new("").unwrap_err(), E::MissingTrustDomain);
    assert_eq!(
        TrustDomain::new("Example.org").unwrap_err(),
        E::TrustDomainChar { ch: 'E' }
    );
    assert_eq!(TrustDomain::new("td:1").unwrap_err(), E::HasPort);
}

#[test]
fn every_error_message_names_its_rule() {
    let cases = [
        ("", "empty"),
        ("http://x/y", "scheme"),
        ("spiffe://x/y?q", "query"),
        ("spiffe://x/y#f", "fragment"),
        ("spiffe://x/%20", "percent"),
        ("spiffe://u@x/y", "user info"),
        ("spiffe://x:1/y", "port"),
        ("spiffe:///y", "trust domain is missing"),
        ("spiffe://X/y", "trust domain character"),
        ("spiffe://x//y", "empty segments"),
        ("spiffe://x/..", "dot segments"),
        ("spiffe://x/y/", "trailing slash"),
        ("spiffe://x/y:", "path character"),
    ];
    for (input, words) in cases {
        let msg = err(input).to_string();
        assert!(msg.contains(words), "{input:?}: {msg:?} lacks {words:?}");
    }
}

#[test]
fn trust_domain_from_an_id_with_a_path() {
    // go-spiffe TestTrustDomainFromString "allow id with path":
    // assertOK(t, "spiffe://trustdomain/path", td); and TestTrustDomainID:
    // "spiffe://trustdomain/path" gives the trust domain ID "spiffe://trustdomain".
    let td = TrustDomain::new("spiffe://trustdomain/path").unwrap();
    assert_eq!(td.as_str(), "trustdomain");
    assert_eq!(td.id().as_str(), "spiffe://trustdomain");
    // The ID form is still parsed in full: a bad path is an error.
    // go-spiffe "reject bad ids": "spiffe://trustdomain/path/" and
    // "spiffe://trustdomain/%F0%9F%A4%AF".
    assert_eq!(
        TrustDomain::new("spiffe://trustdomain/").unwrap_err(),
        E::TrailingSlash
    );
    assert_eq!(
        TrustDomain::new("spiffe://trustdomain/path/").unwrap_err(),
        E::TrailingSlash
    );
    assert!(TrustDomain::new("spiffe://trustdomain/%F0%9F%A4%AF").is_err());
}

#[test]
fn trust_domain_with_a_scheme_separator_is_parsed_as_an_id() {
    // go-spiffe TrustDomainFromString parses any input containing ":/" as an
    // ID ("diagnostics are better for a bad input like spiffe:/trustdomain"):
    // assertFail(t, "spiffe:/trustdomain/path", "scheme is missing or invalid").
    for s in [
        "spiffe:/trustdomain/path",
        "spiffe:/trustdomain",
        "SPIFFE://trustdomain",
        "http://trustdomain",
    ] {
        assert_eq!(TrustDomain::new(s).unwrap_err(), E::WrongScheme, "{s}");
    }
    // assertFail(t, "spiffe://", ...) and "spiffe:///path": "trust domain is missing"
    assert_eq!(
        TrustDomain::new("spiffe://").unwrap_err(),
        E::MissingTrustDomain
    );
    assert_eq!(
        TrustDomain::new("spiffe:///path").unwrap_err(),
        E::MissingTrustDomain
    );
    // "spiffe://%F0%9F%A4%AF/path": trust domain characters are limited...
    assert!(TrustDomain::new("spiffe://%F0%9F%A4%AF/path").is_err());
}

/// go-spiffe `tdChars` and `pathChars` (spiffeid/id_test.go).
fn is_td_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

#[test]
fn every_char_below_256_in_trust_domain_and_path() {
    // go-spiffe TestFromString and TestTrustDomainFromString: "Go all the way
    // through 255, which ensures we reject UTF-8 appropriately" -- "allow good
    // trustdomain char", "reject bad trustdomain char", "allow good path char",
    // "reject bad path char" ('/' skipped: it delimits segments).
    for c in (0u32..256).filter_map(char::from_u32) {
        if c == '/' {
            continue;
        }
        let id_td = format!("spiffe://trustdomain{c}/path");
        let id_path = format!("spiffe://trustdomain/path{c}");
        let name = format!("trustdomain{c}");
        if is_td_char(c) {
            let id = SpiffeId::parse(&id_td).unwrap();
            assert_eq!(id.trust_domain_str(), name);
            assert_eq!(id.path(), "/path");
            assert_eq!(TrustDomain::new(&name).unwrap().as_str(), name);
            assert_eq!(
                TrustDomain::new(&format!("spiffe://{name}"))
                    .unwrap()
                    .as_str(),
                name
            );
        } else {
            assert!(
                SpiffeId::parse(&id_td).is_err(),
                "{c:?} accepted in {id_td:?}"
            );
            assert!(
                TrustDomain::new(&name).is_err(),
                "{c:?} accepted in {name:?}"
            );
        }
        if is_path_char(c) {
            let id = SpiffeId::parse(&id_path).unwrap();
            assert_eq!(id.path(), format!("/path{c}"));
        } else {
            assert!(
                SpiffeId::parse(&id_path).is_err(),
                "{c:?} accepted in {id_path:?}"
            );
        }
    }
}

#[test]
fn upstream_scheme_trust_domain_and_segment_cases() {
    // go-spiffe TestFromString "reject bad scheme".
    for s in ["s", "spiffe:/", "Spiffe://"] {
        assert_eq!(err(s), E::WrongScheme, "{s}");
    }
    // "reject missing trust domain"
    for s in ["spiffe://", "spiffe:///"] {
        assert_eq!(err(s), E::MissingTrustDomain, "{s}");
    }
    // "reject empty segments"
    assert_eq!(err("spiffe://trustdomain/"), E::TrailingSlash);
    assert_eq!(err("spiffe://trustdomain//"), E::EmptySegment);
    assert_eq!(err("spiffe://trustdomain//path"), E::EmptySegment);
    assert_eq!(err("spiffe://trustdomain/path/"), E::TrailingSlash);
    // "reject dot segments"
    for s in [
        "spiffe://trustdomain/.",
        "spiffe://trustdomain/./path",
        "spiffe://trustdomain/path/./other",
        "spiffe://trustdomain/path/..",
        "spiffe://trustdomain/..",
        "spiffe://trustdomain/../path",
        "spiffe://trustdomain/path/../other",
    ] {
        assert_eq!(err(s), E::DotSegment, "{s}");
    }
    // "The following are ok since the the segments, while containing dots are
    // not all dots (or are more than two dots)"
    for (s, path) in [
        ("spiffe://trustdomain/.path", "/.path"),
        ("spiffe://trustdomain/..path", "/..path"),
        ("spiffe://trustdomain/...", "/..."),
    ] {
        assert_eq!(SpiffeId::parse(s).unwrap().path(), path, "{s}");
    }
    // "reject percent encoding": percent-encoded unicode and ascii.
    for s in [
        "spiffe://%F0%9F%A4%AF/path",
        "spiffe://trustdomain/%F0%9F%A4%AF",
        "spiffe://%62%61%64/path",
        "spiffe://trustdomain/%62%61%64",
    ] {
        assert!(SpiffeId::parse(s).is_err(), "{s}");
    }
    // "path is optional"
    assert_eq!(SpiffeId::parse("spiffe://trustdomain").unwrap().path(), "");
}

#[test]
fn from_parts_follows_the_upstream_path_rules() {
    // go-spiffe TestFromPathf / TestIDReplacePath: "" and "/foo" are fine,
    // "foo" gives `path must have a leading slash`, "/" gives `path cannot have
    // a trailing slash`.
    let td = TrustDomain::new("trustdomain").unwrap();
    assert_eq!(
        SpiffeId::from_parts(&td, "").unwrap().as_str(),
        "spiffe://trustdomain"
    );
    assert_eq!(
        SpiffeId::from_parts(&td, "/foo").unwrap().as_str(),
        "spiffe://trustdomain/foo"
    );
    let e = SpiffeId::from_parts(&td, "foo").unwrap_err();
    assert_eq!(e, E::NoLeadingSlash);
    assert!(
        e.to_string().contains("path must have a leading slash"),
        "{e}"
    );
    assert_eq!(
        SpiffeId::from_parts(&td, "/").unwrap_err(),
        E::TrailingSlash
    );
}

/// go-spiffe `errBadTrustDomainChar` and `errBadPathSegmentChar` (spiffeid/errors.go).
const BAD_TD_CHAR: &str = "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores";
const BAD_PATH_CHAR: &str =
    "path segment characters are limited to letters, numbers, dots, dashes, and underscores";

/// go-spiffe `assertErrorContains`: the error text carries the upstream one.
fn assert_fails_with(res: Result<impl std::fmt::Debug, E>, input: &str, text: &str) {
    match res {
        Ok(v) => panic!("{input:?} accepted as {v:?}, upstream fails with {text:?}"),
        Err(e) => assert!(
            e.to_string().contains(text),
            "{input:?}: {e:?} ({e}) lacks the upstream text {text:?}"
        ),
    }
}

#[test]
fn upstream_error_texts_for_every_char_below_256() {
    // go-spiffe TestFromString: "reject bad trustdomain char" asserts
    // assertFail(t, "spiffe://trustdomain"+s+"/path", "trust domain characters
    // are limited to ...") and "reject bad path char" asserts
    // assertFail(t, "spiffe://trustdomain/path"+s, "path segment characters are
    // limited to ...") for every char below 256 ('?', '#', '%', ':' and '@'
    // included); TestTrustDomainFromString: assertFail(t, "trustdomain"+s,
    // "trust domain characters are limited to ...") ('/' included there).
    for c in (0u32..256).filter_map(char::from_u32) {
        if !is_td_char(c) {
            let name = format!("trustdomain{c}");
            assert_fails_with(TrustDomain::new(&name), &name, BAD_TD_CHAR);
            if c != '/' {
                let s = format!("spiffe://trustdomain{c}/path");
                assert_fails_with(SpiffeId::parse(&s), &s, BAD_TD_CHAR);
            }
        }
        if !is_path_char(c) && c != '/' {
            let s = format!("spiffe://trustdomain/path{c}");
            assert_fails_with(SpiffeId::parse(&s), &s, BAD_PATH_CHAR);
        }
    }
}

#[test]
fn upstream_error_texts_of_the_named_cases() {
    let cases = [
        // go-spiffe TestFromString "reject empty", "reject bad scheme",
        // "reject missing trust domain", "reject empty segments", "reject dot
        // segments", "reject percent encoding".
        ("", "cannot be empty"),
        ("s", "scheme is missing or invalid"),
        ("spiffe:/", "scheme is missing or invalid"),
        ("Spiffe://", "scheme is missing or invalid"),
        ("spiffe://", "trust domain is missing"),
        ("spiffe:///", "trust domain is missing"),
        ("spiffe://trustdomain/", "path cannot have a trailing slash"),
        (
            "spiffe://trustdomain//",
            "path cannot contain empty segments",
        ),
        (
            "spiffe://trustdomain//path",
            "path cannot contain empty segments",
        ),
        (
            "spiffe://trustdomain/path/",
            "path cannot have a trailing slash",
        ),
        ("spiffe://trustdomain/.", "path cannot contain dot segments"),
        (
            "spiffe://trustdomain/../path",
            "path cannot contain dot segments",
        ),
        ("spiffe://%F0%9F%A4%AF/path", BAD_TD_CHAR),
        ("spiffe://trustdomain/%F0%9F%A4%AF", BAD_PATH_CHAR),
        ("spiffe://%62%61%64/path", BAD_TD_CHAR),
        ("spiffe://trustdomain/%62%61%64", BAD_PATH_CHAR),
        // TestFromURI: parseURI("spiffe://trust$domain"), ("spiffe://trustdomain/path$").
        ("spiffe://trust$domain", BAD_TD_CHAR),
        ("spiffe://trustdomain/path$", BAD_PATH_CHAR),
        // The v1 table cases (spiffeid id_test.go, "port_not_allowed",
        // "user_info_not_allowed", "empty_port", "query_not_allowed",
        // "fragment_not_allowed") read by the v2 parser: the first character
        // of its part that is not allowed.
        ("spiffe://domain.test:8080/path/element", BAD_TD_CHAR),
        ("spiffe://user:password@test.org/path/element", BAD_TD_CHAR),
        ("spiffe://domain.test:/path/element", BAD_TD_CHAR),
        ("spiffe://domain.test/path/element?query=1", BAD_PATH_CHAR),
        (
            "spiffe://domain.test/path/element?#fragment-1",
            BAD_PATH_CHAR,
        ),
        ("spiffe://domain.test/path/elem%5uent", BAD_PATH_CHAR),
    ];
    for (input, text) in cases {
        assert_fails_with(SpiffeId::parse(input), input, text);
    }
    // TestTrustDomainFromString "reject empty" and "reject bad ids".
    for (input, text) in [
        ("", "trust domain is missing"),
        ("spiffe:/trustdomain/path", "scheme is missing or invalid"),
        ("spiffe://", "trust domain is missing"),
        ("spiffe:///path", "trust domain is missing"),
        ("spiffe://trustdomain/", "path cannot have a trailing slash"),
        (
            "spiffe://trustdomain/path/",
            "path cannot have a trailing slash",
        ),
        ("spiffe://%F0%9F%A4%AF/path", BAD_TD_CHAR),
        ("spiffe://trustdomain/%F0%9F%A4%AF", BAD_PATH_CHAR),
        // v1 trustdomain_test.go "has_port", "has_colon".
        ("spiffe://domain.test:80", BAD_TD_CHAR),
        ("spiffe://domain.test:", BAD_TD_CHAR),
    ] {
        assert_fails_with(TrustDomain::new(input), input, text);
    }
}

#[test]
fn the_first_broken_rule_is_reported_reading_left_to_right() {
    // go-spiffe FromString reads the trust domain, then ValidatePath the
    // segments in order; a '?', '#' or '%' later in the ID does not hide an
    // earlier error.
    assert_eq!(err("spiffe:///path?x"), E::MissingTrustDomain);
    assert_eq!(err("spiffe://td//a?b"), E::EmptySegment);
    assert_eq!(err("spiffe://td/./a#b"), E::DotSegment);
    assert_eq!(err("spiffe://Td/a%41"), E::TrustDomainChar { ch: 'T' });
    assert_eq!(err("spiffe://td/a$/b?"), E::PathChar { ch: '$' });
}

#[test]
fn upstream_path_and_segment_cases() {
    // go-spiffe path_test.go TestValidatePathSegment.
    assert_eq!(validate_path_segment(""), Err(E::EmptySegment));
    assert_eq!(validate_path_segment("."), Err(E::DotSegment));
    assert_eq!(validate_path_segment(".."), Err(E::DotSegment));
    assert_eq!(validate_path_segment("/"), Err(E::PathChar { ch: '/' }));
    assert_eq!(validate_path_segment("a"), Ok(()));
    assert_eq!(validate_path_segment("abc-_.Z9"), Ok(()));
    // "reject percent-encoded segment text": errBadPathSegmentChar.
    assert_fails_with(validate_path_segment("%61pi"), "%61pi", BAD_PATH_CHAR);
    // TestValidatePath.
    assert_eq!(validate_path("/"), Err(E::TrailingSlash));
    assert_eq!(validate_path("/foo/"), Err(E::TrailingSlash));
    assert_eq!(validate_path("/foo//bar"), Err(E::EmptySegment));
    assert_eq!(validate_path("foo"), Err(E::NoLeadingSlash));
    assert_eq!(validate_path(""), Ok(()));
    // TestFromSegments / TestJoinPathSegments(Hierarchical).
    let td = TrustDomain::new("trustdomain").unwrap();
    let ok = |segs: &[&str]| SpiffeId::from_segments(&td, segs).unwrap();
    assert_eq!(ok(&[]).as_str(), "spiffe://trustdomain");
    assert_eq!(ok(&["foo"]).path(), "/foo");
    assert_eq!(ok(&["foo", "bar"]).path(), "/foo/bar");
    assert_eq!(
        ok(&["ns", "default", "sa", "web"]).path(),
        "/ns/default/sa/web"
    );
    let fail = |segs: &[&str]| SpiffeId::from_segments(&td, segs).unwrap_err();
    assert_eq!(fail(&[""]), E::EmptySegment);
    assert_eq!(fail(&["."]), E::DotSegment);
    assert_eq!(fail(&["/"]), E::PathChar { ch: '/' });
    assert_eq!(fail(&["/foo"]), E::PathChar { ch: '/' });
    assert_eq!(fail(&["$"]), E::PathChar { ch: '$' });
}

#[test]
fn upstream_member_of_cases() {
    // go-spiffe TestIDMemberOf.
    let td = TrustDomain::new("trustdomain").unwrap();
    assert!(
        SpiffeId::from_segments(&td, &["path", "element"])
            .unwrap()
            .member_of(&td)
    );
    assert!(td.id().member_of(&td));
    let td2 = TrustDomain::new("domain2.test").unwrap();
    assert!(
        !SpiffeId::from_segments(&td2, &["path", "element"])
            .unwrap()
            .member_of(&td)
    );
    // A trust domain that only starts like ours is another trust domain.
    assert!(!id_of("spiffe://trustdomain2/path").member_of(&td));
}

fn id_of(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}
