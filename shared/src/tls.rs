//! The one TLS crypto provider of every wschat process: rustls on `ring`.
//!
//! rustls needs a crypto provider. The functions' TLS is small (Redis over `rediss://`, Secrets Manager at cold
//! start, and PostToConnection on AWS), and `ring` does it in a fraction of `aws-lc-rs`'s code (docs/benchmark.md,
//! "Sizes").
//!
//! Two providers can meet in one process: the tests and the load tool also link the AWS SDK client
//! (feature `sdk`), whose HTTP client brings `aws-lc-rs`. rustls then has no default of its own and any
//! `ClientConfig::builder()` (redis-rs calls it for `rediss://`) would panic, so every path that makes a TLS
//! client installs ours first. The SDK names its provider explicitly and is unaffected.
//!
//! # Trust
//! Every HTTPS client here ([`https_connector`]) trusts the system's roots and the CAs added with [`trust_also`]:
//! those of [`crate::config::AWS_CA_BUNDLE`], added at cold start, and the emulator's local CA when it serves
//! TLS (`--tls`). Verification is never turned off.
//!
//! # Opening connections
//! A client opens at most [`OPENING_AT_ONCE`] connections at a time. A cold fan-out asks for one connection per
//! post in flight (64, `FANOUT_MAX_IN_FLIGHT`); opened all at once, their TLS handshakes share the sandbox's
//! fraction of a vCPU and every post waits for the slowest. Opened a few at a time, the first posts go out on the
//! connection opened during Init ([`crate::gateway::Gateway::warm`]) and on the first new ones, each post finished
//! frees its connection for the next, and the pool grows only as far as the posts in flight need.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::sync::Semaphore;

/// Makes `ring` the process's rustls provider, unless one is installed already; cheap to call again.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing a provider is fine: there is one either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Connections a client opens at once; more wait for one of these to open (see "Opening connections").
pub const OPENING_AT_ONCE: usize = 8;

/// The CAs trusted besides the system's, for the clients made from now on.
static EXTRA_ROOTS: RwLock<Vec<CertificateDer<'static>>> = RwLock::new(Vec::new());

/// The certificates of a PEM file's text.
///
/// # Errors
/// When `pem` holds no certificate, or one that does not parse.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("a certificate does not parse: {err}"))?;
    if certs.is_empty() {
        return Err("the file holds no PEM certificate".to_owned());
    }
    // A PEM block is any base64: each must also be a certificate a client can trust.
    let mut check = rustls::RootCertStore::empty();
    for cert in &certs {
        check
            .add(cert.clone())
            .map_err(|err| format!("a certificate does not parse: {err}"))?;
    }
    Ok(certs)
}

/// Trusts `certs` too, in every HTTPS client made after this call (a client's trust is fixed when it is made).
pub fn trust_also(certs: Vec<CertificateDer<'static>>) {
    let mut roots = EXTRA_ROOTS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for cert in certs {
        if !roots.contains(&cert) {
            roots.push(cert);
        }
    }
}

/// The system's roots and those of [`trust_also`].
fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates of the system store that do not parse are skipped (rustls-native-certs reports them); none at
    // all leaves https to fail per call with a certificate error, and http working.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let extra = EXTRA_ROOTS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    roots.add_parsable_certificates(extra.iter().cloned());
    roots
}

/// HTTP/1.1 over rustls (or plain HTTP), keep-alive, no Nagle delay, [`OPENING_AT_ONCE`] connections opened at
/// once: the connector of every HTTP client here.
pub type HttpsConnector =
    Pacing<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>;

/// A connector that trusts the system's roots and [`trust_also`]'s, and gives up connecting after `timeout`.
pub fn https_connector(timeout: std::time::Duration) -> HttpsConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // Small requests and answers: no Nagle delay.
    http.set_nodelay(true);
    http.set_keepalive(Some(std::time::Duration::from_secs(30)));
    http.set_connect_timeout(Some(timeout));
    install_crypto_provider();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots())
        .with_no_client_auth();
    Pacing::new(
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
        OPENING_AT_ONCE,
    )
}

/// A connector that lets `at_once` of its connections be opened at a time (clones share the bound).
#[derive(Clone, Debug)]
pub struct Pacing<C> {
    inner: C,
    opening: Arc<Semaphore>,
}

impl<C> Pacing<C> {
    /// `inner`, at most `at_once` connections opening at a time.
    pub fn new(inner: C, at_once: usize) -> Self {
        Self {
            inner,
            opening: Arc::new(Semaphore::new(at_once.max(1))),
        }
    }
}

impl<C> tower_service::Service<http::Uri> for Pacing<C>
where
    C: tower_service::Service<http::Uri> + Clone + Send + 'static,
    C::Future: Send,
{
    type Response = C::Response;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // The inner connector was readied by poll_ready: call it now, and hold its future until a permit.
        let opening = self.opening.clone();
        let connect = self.inner.call(uri);
        Box::pin(async move {
            // Closed never: the semaphore lives as long as its connectors.
            let _permit = opening.acquire_owned().await;
            connect.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_the_provider_twice_keeps_one_process_default() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a process default");
        assert!(
            !provider.cipher_suites.is_empty(),
            "the installed provider offers cipher suites"
        );
        // What redis-rs does for rediss://: a client config from the process default, which must not panic.
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert!(config.alpn_protocols.is_empty());
    }

    /// A connector whose connections take a while to open, counting how many open at once.
    #[derive(Clone, Default)]
    struct Slow {
        opening: Arc<std::sync::atomic::AtomicUsize>,
        most: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl tower_service::Service<http::Uri> for Slow {
        type Response = ();
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Uri) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = this.opening.fetch_add(1, SeqCst) + 1;
                this.most.fetch_max(now, SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                this.opening.fetch_sub(1, SeqCst);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_client_opens_only_a_few_connections_at_once_and_every_one_in_the_end() {
        use tower_service::Service as _;
        let slow = Slow::default();
        let pacing = Pacing::new(slow.clone(), 3);
        let opened = futures_util::future::join_all((0..20).map(|_| {
            let mut pacing = pacing.clone();
            async move {
                pacing
                    .call(http::Uri::from_static("https://example.com/"))
                    .await
            }
        }))
        .await;

        assert_eq!(opened.iter().filter(|r| r.is_ok()).count(), 20);
        assert_eq!(slow.most.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_bundle_must_hold_pem_certificates_that_parse() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let two = format!("{}{}", ca.cert.pem(), ca.cert.pem());
        assert_eq!(certificates(two.as_bytes()).expect("parsed").len(), 2);
        let none = certificates(b"hello").expect_err("no certificate");
        assert!(none.contains("no PEM certificate"), "{none}");
        let broken = certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
            .expect_err("broken");
        assert!(broken.contains("does not parse"), "{broken}");
    }

    /// A TLS server on loopback with a certificate for 127.0.0.1 from a CA of its own, answering every request of
    /// a keep-alive connection with 204; its address, that CA, and the TLS connections it has accepted.
    async fn server_of_its_own_ca() -> (
        std::net::SocketAddr,
        CertificateDer<'static>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        install_crypto_provider();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut buf = [0u8; 4096];
                    // A request (a GET, one read) at a time, until the client closes.
                    while tls.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        let _ = tls
                            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        let _ = tls.flush().await;
                    }
                });
            }
        });
        (addr, ca.der().clone(), accepted)
    }

    #[tokio::test]
    async fn a_server_of_a_private_ca_is_refused_until_that_ca_is_trusted_then_kept_alive() {
        let (addr, ca, accepted) = server_of_its_own_ca().await;
        let uri: http::Uri = format!("https://{addr}/").parse().expect("uri");
        let get = |client: crate::http_client::HttpClient| {
            let uri = uri.clone();
            async move { client.send("GET", &uri, &[], b"").await }
        };
        let client =
            || crate::http_client::HttpClient::new(std::time::Duration::from_secs(5), 1024);

        let untrusted = get(client()).await;
        trust_also(vec![ca]);
        let trusted = client();
        let answers = [get(trusted.clone()).await, get(trusted.clone()).await];

        let err = untrusted.expect_err("an unknown CA is refused");
        assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
        for answer in answers {
            assert_eq!(answer.expect("trusted now").status, 204);
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the second request rode the first one's TLS connection"
        );
    }
}
