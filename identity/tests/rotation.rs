//! Rotation: a long-lived mTLS connection keeps working while SVID and bundle
//! are swapped; the next handshake sees the new SVID; a bundle with the old and
//! the new root accepts both; dropping the old root refuses its SVIDs on new
//! handshakes only.
mod common;

use common::{connect, credentials, echo, echo_server, mesh_ca, store};
use palisade_identity::{Credentials, TlsOptions};

const SERVER: &str = "spiffe://mesh.test/ns/prod/sa/db";
const CLIENT: &str = "spiffe://mesh.test/ns/prod/sa/api";

fn leaf_of(creds: &Credentials) -> Vec<u8> {
    creds.certified_key().cert[0].to_vec()
}

#[tokio::test]
async fn long_lived_connection_survives_svid_and_bundle_rotation() {
    let (old_ca, new_ca) = (mesh_ca(), mesh_ca());
    let server = store(&old_ca, SERVER);
    let client = store(&old_ca, CLIENT);
    let opts = TlsOptions::default();
    let (addr, mut accepted) = echo_server(server.clone(), opts.clone()).await;

    let mut long_lived = connect(addr, &client, SERVER, &opts).await.unwrap();
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    let first_leaf = long_lived.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(echo(&mut long_lived, b"before").await, b"before");

    // Step 1: both sides trust old + new roots.
    let both = old_ca.bundle().merged_with(new_ca.bundle());
    server.update_bundle(both.clone());
    client.update_bundle(both.clone());
    // Step 2: the server rotates to an SVID of the new root.
    let new_server = credentials(&new_ca, SERVER).with_bundle(both.clone());
    let new_server_leaf = leaf_of(&new_server);
    server.update(new_server);

    // The established connection is untouched.
    assert_eq!(echo(&mut long_lived, b"during").await, b"during");

    // The next handshake presents the new SVID, and it verifies.
    let mut fresh = connect(addr, &client, SERVER, &opts).await.unwrap();
    let seen = fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(seen, new_server_leaf);
    assert_ne!(seen, first_leaf);
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    assert_eq!(echo(&mut fresh, b"new").await, b"new");

    // A client still on the old root and a client on the new root both pass.
    let new_client = store(&new_ca, CLIENT);
    new_client.update_bundle(both);
    let mut c2 = connect(addr, &new_client, SERVER, &opts).await.unwrap();
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    assert_eq!(echo(&mut c2, b"new client").await, b"new client");

    // Step 3: the old root leaves the server's bundle. New handshakes of old-root
    // clients fail; the long-lived connection still works.
    server.update_bundle(new_ca.bundle().clone());
    let res = connect(addr, &client, SERVER, &opts).await;
    let server_side = accepted.recv().await.unwrap();
    assert!(server_side.is_err(), "old-root client must be refused now");
    if let Ok(mut tls) = res {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"x").await;
        let mut buf = [0u8; 1];
        assert!(tls.read(&mut buf).await.map(|n| n == 0).unwrap_or(true));
    }
    assert_eq!(echo(&mut long_lived, b"after").await, b"after");
}

#[tokio::test]
async fn client_side_bundle_rotation_applies_to_the_next_handshake() {
    let (old_ca, new_ca) = (mesh_ca(), mesh_ca());
    let server = store(&new_ca, SERVER);
    let client = store(&old_ca, CLIENT);
    server.update_bundle(old_ca.bundle().merged_with(new_ca.bundle()));
    let opts = TlsOptions::default();
    let (addr, _accepted) = echo_server(server, opts.clone()).await;
    // The client does not trust the new root yet.
    assert!(connect(addr, &client, SERVER, &opts).await.is_err());
    client.update_bundle(old_ca.bundle().merged_with(new_ca.bundle()));
    let mut tls = connect(addr, &client, SERVER, &opts).await.unwrap();
    assert_eq!(echo(&mut tls, b"ok").await, b"ok");
}
