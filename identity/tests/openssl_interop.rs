//! Interop with an independent TLS and X.509 implementation: OpenSSL's
//! `s_server`, `s_client`, `req`, `x509` and `verify` against our certificates
//! and TLS configs, both directions. Needs the `openssl` binary (Debian package
//! `openssl`); the tests fail with a clear message when it is missing.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{TD, id, td};
use palisade_identity::credentials::write_svid_dir;
use palisade_identity::{
    CaOptions, CertificateAuthority, CredentialStore, Credentials, TlsOptions, peer_spiffe_id,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const SERVER: &str = "spiffe://mesh.test/ns/prod/sa/db";
const CLIENT: &str = "spiffe://mesh.test/ns/prod/sa/api";

fn openssl() -> Command {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "these interop tests need the `openssl` command (Debian: apt-get install openssl)"
    );
    Command::new("openssl")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes the SVID directory for `id` and returns it.
fn svid_dir(ca: &CertificateAuthority, id_str: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let svid = ca.issue(&id(id_str), Duration::from_secs(3600)).unwrap();
    write_svid_dir(dir.path(), &svid.chain, svid.key.as_ref(), ca.bundle()).unwrap();
    // Leaf alone and intermediates alone, for s_client/s_server -cert/-cert_chain.
    let certs = palisade_identity::pem::certs(
        &std::fs::read_to_string(dir.path().join("svid.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        palisade_identity::pem::encode_certs(&certs[..1]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("chain.pem"),
        palisade_identity::pem::encode_certs(&certs[1..]),
    )
    .unwrap();
    dir
}

fn p(dir: &Path, f: &str) -> String {
    dir.join(f).display().to_string()
}

/// Kills the child on drop, so a failing test leaves no `openssl` behind.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn our_client_with_openssl_s_server() {
    for intermediate in [false, true] {
        let ca = common::mesh_ca_with(intermediate);
        let server_dir = svid_dir(&ca, SERVER);
        let port = free_port();
        let mut cmd = openssl();
        cmd.args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", &p(server_dir.path(), "leaf.pem")])
            .args(["-key", &p(server_dir.path(), "svid.key")])
            .args(["-CAfile", &p(server_dir.path(), "bundle.pem")])
            .args([
                "-Verify",
                "4",
                "-verify_return_error",
                "-tls1_3",
                "-www",
                "-naccept",
                "1",
            ]);
        if intermediate {
            cmd.args(["-cert_chain", &p(server_dir.path(), "chain.pem")]);
        }
        let mut child = Child(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Wait until s_server says it accepts.
        let stdout = child.0.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = lines
                .next()
                .expect("s_server exited before ACCEPT")
                .unwrap();
            if line.contains("ACCEPT") {
                break;
            }
        }
        let client_store = common::store(&ca, CLIENT);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut tls = common::connect(addr, &client_store, SERVER, &TlsOptions::default())
            .await
            .unwrap();
        assert_eq!(peer_spiffe_id(tls.get_ref().1), Some(id(SERVER)));
        tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut body = String::new();
        let mut reader = tokio::io::BufReader::new(tls);
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
            body.push_str(&line);
            line.clear();
        }
        assert!(body.starts_with("HTTP/1.0 200 ok"), "{body}");
        // s_server verified our client SVID and shows it on the status page.
        assert!(body.contains("Client certificate"), "{body}");
        assert!(body.contains("TLSv1.3"), "{body}");
    }
}

#[tokio::test]
async fn our_client_refuses_openssl_s_server_with_the_wrong_identity() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let server_dir = svid_dir(&ca, "spiffe://mesh.test/ns/prod/sa/impostor");
    let port = free_port();
    let mut child = Child(
        openssl()
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", &p(server_dir.path(), "svid.pem")])
            .args(["-key", &p(server_dir.path(), "svid.key")])
            .args(["-tls1_3", "-www", "-naccept", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    while !lines.next().unwrap().unwrap().contains("ACCEPT") {}
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let res = common::connect(
        addr,
        &common::store(&ca, CLIENT),
        SERVER,
        &TlsOptions::default(),
    )
    .await;
    assert!(
        res.is_err(),
        "must not accept spiffe://.../impostor as {SERVER}"
    );
}

/// Our server: reads one line, answers `pong <client SPIFFE ID>`, closes.
async fn pong_server(
    store: Arc<CredentialStore>,
) -> (u16, tokio::task::JoinHandle<Result<String, String>>) {
    let config = palisade_identity::server_config(&store).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = peer_spiffe_id(tls.get_ref().1).ok_or("no peer id")?;
        let mut reader = tokio::io::BufReader::new(tls);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let mut tls = reader.into_inner();
        tls.write_all(format!("pong {peer}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(peer.to_string())
    });
    (port, task)
}

fn run_s_client(port: u16, dir: &Path, ca_file: &Path) -> (bool, String, String) {
    let mut cmd = openssl();
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-cert", &p(dir, "leaf.pem")])
        .args(["-key", &p(dir, "svid.key")]);
    if std::fs::metadata(dir.join("chain.pem")).unwrap().len() > 0 {
        cmd.args(["-cert_chain", &p(dir, "chain.pem")]);
    }
    let mut child = cmd
        .args(["-CAfile", &ca_file.display().to_string()])
        .args(["-verify_return_error", "-tls1_3", "-ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let ok = child.wait().unwrap().success();
    (ok, out, err)
}

#[tokio::test]
async fn openssl_s_client_with_our_server() {
    let ca = common::mesh_ca_with(true);
    let (port, server) = pong_server(common::store(&ca, SERVER)).await;
    let client_dir = svid_dir(&ca, CLIENT);
    let bundle = client_dir.path().join("bundle.pem");
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || run_s_client(port, client_dir.path(), &bundle))
            .await
            .unwrap();
    assert!(ok, "s_client failed: {err}\n{out}");
    // s_client verified our server's SVID chain against the bundle...
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    // ...and our server verified s_client's SVID and saw its SPIFFE ID.
    assert!(out.contains(&format!("pong {CLIENT}")), "{out}");
    let server_side = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert_eq!(server_side.unwrap().unwrap().unwrap(), CLIENT);
}

#[tokio::test]
async fn our_server_refuses_openssl_s_client_with_a_foreign_svid() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let other = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let (port, server) = pong_server(common::store(&ca, SERVER)).await;
    let client_dir = svid_dir(&other, CLIENT);
    // s_client trusts our CA, so only our server can refuse.
    let ours = tempfile::tempdir().unwrap();
    let bundle = ours.path().join("bundle.pem");
    std::fs::write(&bundle, ca.bundle().to_pem()).unwrap();
    let (_, out, _) =
        tokio::task::spawn_blocking(move || run_s_client(port, client_dir.path(), &bundle))
            .await
            .unwrap();
    assert!(!out.contains("pong"), "{out}");
    // The server did see the connection, and refused the certificate.
    let server_side = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("s_client never reached our server")
        .unwrap();
    let err = server_side.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

/// A CA made by OpenSSL as Vault or a corporate PKI would: an RSA root with no
/// SPIFFE SAN and an ECDSA intermediate. We load it, issue, and both OpenSSL
/// and our verifier accept the SVID; the TLS configs work with it.
#[tokio::test]
async fn loads_an_openssl_made_rsa_root_with_ec_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str]| {
        let out = openssl().args(args).current_dir(d).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        d.join("ext.cnf"),
        "[root]\nbasicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
         [int]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.pem",
        "-days",
        "30",
        "-subj",
        "/O=Corp/CN=Corp Root",
        "-config",
        "/dev/null",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "int.key",
        "-out",
        "int.csr",
        "-subj",
        "/O=Corp/CN=Mesh Intermediate",
        "-config",
        "/dev/null",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "int.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "10",
        "-out",
        "int.pem",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "int",
    ]);
    let int_pem = std::fs::read_to_string(d.join("int.pem")).unwrap();
    let root_pem = std::fs::read_to_string(d.join("root.pem")).unwrap();
    let key_pem = std::fs::read_to_string(d.join("int.key")).unwrap();
    let ca =
        CertificateAuthority::from_pem(&int_pem, &key_pem, Some(&root_pem), Some(td(TD))).unwrap();
    let svid = ca.issue(&id(CLIENT), Duration::from_secs(600)).unwrap();
    assert_eq!(
        common::verify(ca.bundle(), &svid.chain).unwrap(),
        id(CLIENT)
    );
    std::fs::write(
        d.join("leaf.pem"),
        palisade_identity::pem::encode_certs(&svid.chain[..1]),
    )
    .unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let out = openssl()
            .args([
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                "root.pem",
                "-untrusted",
                "int.pem",
                "leaf.pem",
            ])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a handshake with SVIDs of that CA.
    let server = CredentialStore::new(
        Credentials::from_issued(
            ca.issue(&id(SERVER), Duration::from_secs(600)).unwrap(),
            ca.bundle().clone(),
        )
        .unwrap(),
    );
    let (addr, mut accepted) = common::echo_server(server, TlsOptions::default()).await;
    let mut tls = common::connect(
        addr,
        &common::store(&ca, CLIENT),
        SERVER,
        &TlsOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    assert_eq!(common::echo(&mut tls, b"rsa root").await, b"rsa root");
}
