//! TLS for `mqtts://` brokers and `https://` firmware downloads: rustls with the ring
//! provider, trusting the CA certificates of a PEM file or, without one, the system's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::device::DeviceError;

/// The rumqttc TLS configuration trusting `ca_file` (PEM), or the system roots.
pub(crate) fn configuration(
    ca_file: Option<&Path>,
) -> Result<rumqttc::TlsConfiguration, DeviceError> {
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(client_config(
        ca_file, true,
    )?)))
}

/// A rustls client configuration trusting `ca_file` (PEM), or the system roots; with
/// `need_roots`, finding none is an error (for HTTP downloads it is not: only an `https://`
/// URL would need them, and it then fails naming the certificate).
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    need_roots: bool,
) -> Result<rustls::ClientConfig, DeviceError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| DeviceError::Tls(format!("CA file {}: {e}", path.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| DeviceError::Tls(format!("CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(DeviceError::Tls(format!(
                    "CA file {}: no certificate in it",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| DeviceError::Tls(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() && need_roots {
                return Err(DeviceError::Tls(
                    "no CA file given and no system root certificates found".into(),
                ));
            }
        }
    }
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange (only
    // aws-lc-rs has it). The SDK stays on ring, whose build is lighter for device targets
    // than aws-lc-rs's; brokers negotiate the classical ECDHE groups ring offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DeviceError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
