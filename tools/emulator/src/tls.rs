//! `--tls`: the emulator serves `https://` and `wss://`, as API Gateway does, with a certificate of a local CA.
//!
//! The CA lives in a folder of its own (`ca.pem`, and `ca-key.pem` readable by its owner only), made on first use
//! and kept, so a browser or a system store told to trust it once keeps trusting it; the server's certificate is
//! made at every start, for `localhost`, `127.0.0.1`, `::1` and the hosts asked for. The functions are told to
//! trust the CA with `AWS_CA_BUNDLE` ([`chat_shared::config::AWS_CA_BUNDLE`]); the in-process handlers trust it
//! without being told. The handshakes run off the accept loop, so a slow or silent client delays no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The CA's certificate, in the CA folder.
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key, in the CA folder.
const CA_KEY_FILE: &str = "ca-key.pem";
/// The CA's name: the same at every start, so a kept key signs as the kept certificate says.
const CA_NAME: &str = "wschat emulator local CA";
/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 128;

/// A server certificate of the local CA, and where that CA is.
pub struct LocalTls {
    config: Arc<rustls::ServerConfig>,
    ca_path: PathBuf,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for LocalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTls")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl LocalTls {
    /// The CA of `dir` (made there when it holds none) and a new server certificate it signs for `localhost`,
    /// `127.0.0.1`, `::1` and `hosts`.
    ///
    /// # Errors
    /// When the folder cannot be made or read, or holds a CA that does not parse.
    pub fn in_dir(dir: &Path, hosts: &[String]) -> anyhow::Result<Self> {
        let (ca_params, ca_key, ca_pem) = local_ca(dir)?;
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .with_context(|| format!("{} holds no certificate", dir.join(CA_FILE).display()))?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for host in hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let mut params = rcgen::CertificateParams::new(names)
            .context("a host name the certificate cannot carry")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wschat emulator");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        chat_shared::tls::install_crypto_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone(), ca.clone()],
                PrivateKeyDer::try_from(key.serialize_der()).map_err(anyhow::Error::msg)?,
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            ca_path: dir.join(CA_FILE),
            ca,
        })
    }

    /// The CA's certificate file (what `AWS_CA_BUNDLE`, a browser or a system store is told to trust).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The CA's certificate.
    pub fn ca(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// Accepts TLS on `listener`'s connections.
    pub(crate) fn listen(&self, listener: TcpListener) -> std::io::Result<TlsListener> {
        TlsListener::start(listener, TlsAcceptor::from(self.config.clone()))
    }
}

/// Where the CA is kept unless `--tls-dir` says otherwise: `$XDG_DATA_HOME/wschat-emulator/tls`, else
/// `~/.local/share/wschat-emulator/tls`, else under the system's temporary folder.
pub fn default_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let data = var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data.join("wschat-emulator").join("tls")
}

/// The CA's parameters (to sign with), its key and its certificate's PEM: read from `dir`, or made there.
fn local_ca(dir: &Path) -> anyhow::Result<(rcgen::CertificateParams, rcgen::KeyPair, String)> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let (cert_path, key_path) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let key = rcgen::KeyPair::from_pem(&read(&key_path)?)
            .with_context(|| format!("{} holds no private key", key_path.display()))?;
        return Ok((params, key, read(&cert_path)?));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok((params, key, cert.pem()))
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// TCP connections whose TLS handshake is done, for `axum::serve`. The handshakes run in tasks of their own.
pub(crate) struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: wait, as axum's own listener does.
                        tracing::warn!(error = %err, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %err, "could not set TCP_NODELAY");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            accepted,
            addr,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accepting task ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("wschat-emulator-tls-{:016x}", fastrand::u64(..)))
    }

    #[test]
    fn the_ca_is_made_once_kept_private_and_signs_every_new_certificate() {
        let dir = scratch();
        let first = LocalTls::in_dir(&dir, &[]).expect("made");
        let again = LocalTls::in_dir(&dir, &["chat.test".to_owned()]).expect("kept");
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(CA_KEY_FILE))
                .expect("key")
                .permissions()
                .mode()
        };
        std::fs::remove_dir_all(&dir).expect("clean up");

        assert_eq!(first.ca(), again.ca(), "the same CA");
        assert_eq!(first.ca_path(), dir.join(CA_FILE));
        #[cfg(unix)]
        assert_eq!(mode & 0o077, 0, "the key is the owner's only");
    }

    #[test]
    fn a_ca_folder_with_a_key_that_is_not_one_is_refused() {
        let dir = scratch();
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(CA_FILE), "not a certificate").expect("write");
        std::fs::write(dir.join(CA_KEY_FILE), "not a key").expect("write");
        let refused = LocalTls::in_dir(&dir, &[]);
        std::fs::remove_dir_all(&dir).expect("clean up");

        let err = format!("{:#}", refused.expect_err("refused"));
        assert!(err.contains("no private key"), "{err}");
    }
}
