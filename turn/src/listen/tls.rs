//! The TLS (`turns:`) listener: rustls (ring provider) over TCP, then the same
//! stream framing as plain TCP.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::backoff::ErrorBackoff;
use super::tcp;
use super::worker::Shard;
use crate::allocation::{FiveTuple, Transport};
use crate::error::TurnError;

/// Builds a TLS acceptor from PEM certificate chain and key files.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TurnError> {
    let tls_err = |what: &'static str, path: &Path, reason: String| TurnError::Tls {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            cert,
            "no certificate in file".into(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err("private key", key, e.to_string()))?;
    // Pick the provider explicitly: other workspace crates may enable a second one.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("certificate", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err("private key", key, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections until the runtime stops; handshakes run in their
/// own tasks so a slow client cannot hold up others.
pub(crate) async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, acceptor: TlsAcceptor) {
    let local: SocketAddr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "TLS listener has no local address");
            return;
        }
    };
    let mut backoff = ErrorBackoff::default();
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "TLS accept failed");
                backoff.after_failure().await;
                continue;
            }
        };
        backoff.succeeded();
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shard = shard.clone();
        tokio::task::spawn_local(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                    .await;
            match handshake {
                Ok(Ok(tls)) => {
                    let tuple = FiveTuple {
                        transport: Transport::Tls,
                        client,
                        server: local,
                    };
                    tcp::serve(shard, tls, tuple).await;
                }
                Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
            }
        });
    }
}
