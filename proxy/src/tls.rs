//! Mesh mTLS on top of `palisade_identity`: one server config (client SVID
//! required, mesh ALPN tokens) and one client config per (expected peer
//! identity, inner protocol), cached. The configs read the credential store
//! at every handshake, so a rotated SVID or bundle applies to new
//! connections without touching live ones.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use palisade_identity::{
    CredentialStore, Credentials, CredentialsError, SpiffeId, SpiffeIdError, TlsOptions,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::batched_io::Batched;
use crate::detect::MeshInner;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot load the SVID directory {dir}: {source} (expected svid.pem, svid.key, bundle.pem)"
    )]
    Load {
        dir: String,
        source: CredentialsError,
    },
    #[error("TLS config: {0}")]
    Config(#[from] palisade_identity::TlsError),
    #[error("the peer table's identity {id:?} is not a SPIFFE ID: {source}")]
    BadExpectedId { id: String, source: SpiffeIdError },
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("the peer presented no SPIFFE ID")]
    NoPeerIdentity,
    #[error("the client did not negotiate a mesh ALPN protocol")]
    NoMeshAlpn,
}

impl TlsError {
    /// The X509-SVID rule that refused the peer's certificate, when one did.
    pub fn svid_rejection(&self) -> Option<&palisade_identity::SvidError> {
        let TlsError::Handshake(io) = self else {
            return None;
        };
        let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
        palisade_identity::SvidError::from_tls_error(tls)
    }
}

pub struct MeshTls {
    store: Arc<CredentialStore>,
    acceptor: TlsAcceptor,
    clients: Mutex<HashMap<(String, MeshInner), TlsConnector>>,
}

impl MeshTls {
    /// Loads `svid.pem`, `svid.key` and `bundle.pem` from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, TlsError> {
        let creds = Credentials::load_dir(dir).map_err(|source| TlsError::Load {
            dir: dir.display().to_string(),
            source,
        })?;
        Self::new(CredentialStore::new(creds))
    }

    pub fn new(store: Arc<CredentialStore>) -> Result<Self, TlsError> {
        let opts = TlsOptions {
            alpn: [MeshInner::H2, MeshInner::Http1, MeshInner::Opaque]
                .iter()
                .map(|i| i.alpn().to_vec())
                .collect(),
            ..TlsOptions::default()
        };
        let server: ServerConfig = palisade_identity::server_config_with(&store, &opts)?;
        Ok(Self {
            store,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Arc<CredentialStore> {
        &self.store
    }

    /// Our own SPIFFE ID.
    pub fn local_id(&self) -> String {
        self.store.current().id().to_string()
    }

    /// Terminates mesh mTLS; returns the stream, the verified peer ID and
    /// the inner protocol the ALPN token announced.
    /// The socket I/O is batched when the inner protocol is HTTP/2 (see
    /// [`crate::batched_io`]).
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(server::TlsStream<Batched<IO>>, String, MeshInner), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let mut tls = self
            .acceptor
            .accept(Batched::new(io))
            .await
            .map_err(TlsError::Handshake)?;
        let (_, conn) = tls.get_ref();
        let inner = conn
            .alpn_protocol()
            .and_then(MeshInner::from_alpn)
            .ok_or(TlsError::NoMeshAlpn)?;
        let peer = palisade_identity::peer_spiffe_id(conn)
            .ok_or(TlsError::NoPeerIdentity)?
            .to_string();
        tls.get_mut().0.set_batching(inner == MeshInner::H2);
        Ok((tls, peer, inner))
    }

    /// Originates mesh mTLS on `tcp`, requiring the server to be `expected`.
    /// The socket I/O is batched when the inner protocol is HTTP/2 (see
    /// [`crate::batched_io`]).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        expected: &str,
        inner: MeshInner,
        sni: Option<&str>,
    ) -> Result<client::TlsStream<Batched<TcpStream>>, TlsError> {
        let connector = self.connector(expected, inner)?;
        // The server name is not checked (the verifier checks the SPIFFE
        // ID): it tells the peer which Service was called. Without one,
        // the peer's IP address, which sends no SNI.
        let name = match sni.and_then(|s| ServerName::try_from(s.to_string()).ok()) {
            Some(name) => name,
            None => {
                let ip = tcp.peer_addr().map_err(TlsError::Handshake)?.ip();
                ServerName::IpAddress(ip.into())
            }
        };
        let mut tls = connector
            .connect(name, Batched::new(tcp))
            .await
            .map_err(TlsError::Handshake)?;
        tls.get_mut().0.set_batching(inner == MeshInner::H2);
        Ok(tls)
    }

    fn connector(&self, expected: &str, inner: MeshInner) -> Result<TlsConnector, TlsError> {
        if let Ok(cache) = self.clients.lock()
            && let Some(c) = cache.get(&(expected.to_string(), inner))
        {
            return Ok(c.clone());
        }
        let id = SpiffeId::parse(expected).map_err(|source| TlsError::BadExpectedId {
            id: expected.to_string(),
            source,
        })?;
        let opts = TlsOptions {
            alpn: vec![inner.alpn().to_vec()],
            ..TlsOptions::default()
        };
        let config: ClientConfig = palisade_identity::client_config_with(&self.store, id, &opts)?;
        let connector = TlsConnector::from(Arc::new(config));
        if let Ok(mut cache) = self.clients.lock() {
            cache.insert((expected.to_string(), inner), connector.clone());
        }
        Ok(connector)
    }
}
