//! Hostile input never panics: arbitrary strings as SPIFFE IDs, and mutated or
//! random bytes as peer certificates, always give an error (or a valid result).
mod common;

use common::{TD, TestCa, good_leaf, verify};
use palisade_identity::{SpiffeId, TrustDomain};
use proptest::prelude::*;
use rustls::pki_types::CertificateDer;

proptest! {
    #[test]
    fn spiffe_id_parse_never_panics_and_round_trips(s in "\\PC{0,64}|spiffe://[a-z0-9._:@-]{0,12}(/[a-zA-Z0-9._%?#-]{0,6}){0,4}/?") {
        if let Ok(id) = SpiffeId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id);
        }
    }

    #[test]
    fn trust_domain_new_never_panics(s in "\\PC{0,64}|[sS]piffe:/{0,3}[a-z0-9._:@-]{0,12}(/[a-zA-Z0-9._%?#-]{0,6}){0,4}/?") {
        // Name or ID form (go-spiffe TrustDomainFromString): a result names a
        // valid trust domain whose ID parses.
        if let Ok(td) = TrustDomain::new(&s) {
            prop_assert_eq!(TrustDomain::new(td.as_str()).unwrap(), td.clone());
            prop_assert_eq!(SpiffeId::parse(td.id().as_str()).unwrap().trust_domain(), td);
        }
    }

    #[test]
    fn random_bytes_are_never_accepted_as_an_svid(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let ca = TestCa::new(TD);
        prop_assert!(verify(&ca.bundle(TD), &[CertificateDer::from(bytes)]).is_err());
    }
}

#[test]
fn every_single_byte_mutation_of_a_valid_svid_is_handled() {
    // Flip each byte of a real SVID in turn: every result is an error or (for
    // bytes no check covers, e.g. inside an unsigned field) never a panic. A
    // mutation inside the signed part must always be rejected.
    let ca = TestCa::new(TD);
    let (leaf, _) = ca.sign(&good_leaf("spiffe://mesh.test/ns/a/sa/b"));
    let bundle = ca.bundle(TD);
    let mut accepted = 0;
    for i in 0..leaf.len() {
        let mut bytes = leaf.to_vec();
        bytes[i] ^= 0x5a;
        if verify(&bundle, &[CertificateDer::from(bytes)]).is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 0, "a mutated SVID was accepted");
}

proptest! {
    #[test]
    fn spiffe_bundle_parse_never_panics(s in "\\PC{0,64}|\\{\"keys\":\\[\\{\"use\":\"x509-svid\",\"kty\":\"(EC|RSA|OKP)\",\"x5c\":\\[\"[A-Za-z0-9+/=]{0,40}\"\\]\\}\\]\\}") {
        // A SPIFFE bundle may come from a federated trust domain's endpoint.
        let _ = palisade_identity::SpiffeBundle::parse(&s);
    }
}
