//! The one TLS crypto provider of every wschat process: rustls on `ring`.
//!
//! rustls needs a crypto provider. The functions' TLS is small (Redis over `rediss://`, Secrets Manager at cold
//! start, and PostToConnection on AWS), and `ring` does it in a fraction of `aws-lc-rs`'s code: with it, and
//! without the SDK's HTTP/2 client, `ws-connect` and `ws-disconnect` fit in 4 MB (docs/benchmark.md, "Sizes").
//!
//! Two providers can meet in one process: the tests and the load tool also link the AWS SDK client
//! (feature `sdk`), whose HTTP client brings `aws-lc-rs`. rustls then has no default of its own and any
//! `ClientConfig::builder()` (redis-rs calls it for `rediss://`) would panic, so every path that makes a TLS
//! client installs ours first. The SDK names its provider explicitly and is unaffected.

/// Makes `ring` the process's rustls provider, unless one is installed already; cheap to call again.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing a provider is fine: there is one either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// HTTP/1.1 over rustls (or plain HTTP), keep-alive, no Nagle delay: the connector of every HTTP client here.
pub type HttpsConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// A connector that trusts the system's roots and gives up connecting after `timeout`.
pub fn https_connector(timeout: std::time::Duration) -> HttpsConnector {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // Small requests and answers: no Nagle delay.
    http.set_nodelay(true);
    http.set_keepalive(Some(std::time::Duration::from_secs(30)));
    http.set_connect_timeout(Some(timeout));
    install_crypto_provider();
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(builder) => builder,
        // No system roots at all: http still works, https fails per call with a certificate error.
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    };
    builder.https_or_http().enable_http1().wrap_connector(http)
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
}
