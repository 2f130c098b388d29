//! A certificate authority of one's own (`rcgen`), for the services that speak TLS on
//! loopback: PostgreSQL and Redis present a certificate it signed, and the server under
//! test is told to trust it (or, to test refusals, another authority's).

use std::path::Path;

use crate::TestbedError;

/// A self-signed authority and its key, kept in memory.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A server certificate and its private key, both PEM.
pub struct ServerCert {
    pub cert_pem: String,
    /// PKCS#8, which OpenSSL (PostgreSQL, Redis) and rustls all read.
    pub key_pem: String,
}

fn failed(what: &str, e: rcgen::Error) -> TestbedError {
    TestbedError::Tls(format!("{what}: {e}"))
}

impl TestCa {
    /// A new authority named `name` (its common name).
    pub fn new(name: &str) -> Result<TestCa, TestbedError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| failed("the authority's parameters", e))?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(|e| failed("the authority's key", e))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| failed("the authority's certificate", e))?;
        Ok(TestCa { cert, key })
    }

    /// The authority's certificate (PEM): what a client is told to trust.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the authority's certificate to `path` (a `sslrootcert` or CA file).
    pub fn write_pem(&self, path: &Path) -> Result<(), TestbedError> {
        std::fs::write(path, self.pem()).map_err(|e| TestbedError::Io("writing a CA file", e))
    }

    /// A server certificate for `names`: host names, or IP addresses such as `127.0.0.1`
    /// (which become IP address entries, as clients verifying an address expect).
    pub fn issue(&self, names: &[&str]) -> Result<ServerCert, TestbedError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone())
            .map_err(|e| failed("the server's parameters", e))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().map_err(|e| failed("the server's key", e))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| failed("the server's certificate", e))?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
