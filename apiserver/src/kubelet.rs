//! Requests the API server makes to kubelets (`pods/log`, `pods/exec`): HTTPS to the node's InternalIP and
//! kubelet port, presenting `--kubelet-client-certificate`. The kubelet's serving certificate is
//! checked against `--kubelet-certificate-authority` when given and, as upstream, not otherwise.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use api_types::tls::AnyServerCertificate;

use crate::RunError;
use crate::error::Error;

/// The kubelet client's TLS files.
#[derive(Debug, Clone, Default)]
pub struct KubeletTls {
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub certificate_authority: Option<PathBuf>,
}

#[derive(Clone, Default)]
pub struct KubeletClient {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl KubeletClient {
    pub fn new(files: &KubeletTls) -> Result<Self, RunError> {
        let (Some(cert), Some(key)) = (&files.client_certificate, &files.client_key) else {
            return Ok(KubeletClient { tls: None });
        };
        let bad = |p: &PathBuf, e: &dyn std::fmt::Display| RunError::Tls(format!("{}: {e}", p.display()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RunError::Tls(e.to_string()))?;
        let builder = match &files.certificate_authority {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(ca, &e))? {
                    roots.add(c.map_err(|e| bad(ca, &e))?).map_err(|e| bad(ca, &e))?;
                }
                builder.with_root_certificates(roots)
            }
            // Upstream's behaviour without --kubelet-certificate-authority.
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServerCertificate::new(provider))),
        };
        let mut config = builder.with_client_auth_cert(certs, key).map_err(|e| RunError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))) })
    }

    /// Sends `request` (path and query as its URI) to the kubelet at `host:port`; the response
    /// streams through, and an upgrade (`pods/exec`) can be taken over with `hyper::upgrade::on`.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        request: hyper::Request<()>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        let tls = self.tls.clone().ok_or_else(|| {
            Error::BadRequest("the API server has no kubelet client certificate (--kubelet-client-certificate)".into())
        })?;
        let unreachable =
            |e: &dyn std::fmt::Display| Error::Internal(format!("cannot reach the kubelet at {host}:{port}: {e}"));
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| unreachable(&e))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| unreachable(&e))?;
        let stream = tls.connect(name, tcp).await.map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
        let (mut parts, ()) = request.into_parts();
        parts
            .headers
            .insert(http::header::HOST, format!("{host}:{port}").parse().map_err(|_| unreachable(&"bad host"))?);
        let request = hyper::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
        sender.send_request(request).await.map_err(|e| unreachable(&e))
    }
}

/// Reads a kubelet's error answer (small) as text.
pub async fn error_text(resp: hyper::Response<hyper::body::Incoming>) -> String {
    match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(e) => e.to_string(),
    }
}
