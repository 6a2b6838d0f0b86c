//! SPIFFE identity for the mesh: IDs, the CA, X509-SVID issue and verification,
//! rustls client and server configs, and rotation of the credentials they use.
#![forbid(unsafe_code)]
