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
