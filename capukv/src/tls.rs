//! Mutual TLS on both ports (rustls, through tonic): optional, off by
//! default. A node is given its certificate and key and the CA that signs
//! every node's (and client's) certificate:
//!
//! - the peer port requires TLS both ways: a node accepts Raft traffic only
//!   from a holder of a certificate the CA signed, and checks the peer it
//!   dials against the CA and the peer's address (its certificate names the
//!   host it is reached at);
//! - the client port presents the node's certificate; a client certificate
//!   is checked against the CA when one is presented, and not required.
//!
//! Files are PEM. A certificate, key or CA that cannot be read, or that
//! holds no PEM block of its kind, is a startup error naming the file.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The PEM files of one node or client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {}: {source}", .path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the TLS {what} {} holds no PEM {marker} block", .path.display())]
    NotPem { what: &'static str, path: PathBuf, marker: &'static str },
    #[error("--tls-cert, --tls-key and --tls-ca go together; {0} is missing")]
    Incomplete(&'static str),
}

/// Reads a PEM file and checks that it holds a block whose label ends with
/// `marker` ("CERTIFICATE", "PRIVATE KEY").
fn read_pem(what: &'static str, path: &Path, marker: &'static str) -> Result<Vec<u8>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.into(), source })?;
    let text = String::from_utf8_lossy(&pem);
    let found = text.lines().any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{marker}-----")));
    if !found {
        return Err(TlsError::NotPem { what, path: path.into(), marker });
    }
    Ok(pem)
}

/// Builds the files from three optional flags: all or none.
pub fn files_from_flags(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsFiles>, TlsError> {
    match (cert, key, ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
        (None, _, _) => Err(TlsError::Incomplete("--tls-cert")),
        (_, None, _) => Err(TlsError::Incomplete("--tls-key")),
        (_, _, None) => Err(TlsError::Incomplete("--tls-ca")),
    }
}

/// A node's TLS material, loaded and checked.
#[derive(Debug, Clone)]
pub struct NodeTls {
    identity: Identity,
    ca: Certificate,
}

impl NodeTls {
    pub fn load(files: &TlsFiles) -> Result<NodeTls, TlsError> {
        let cert = read_pem("certificate", &files.cert, "CERTIFICATE")?;
        let key = read_pem("key", &files.key, "PRIVATE KEY")?;
        let ca = read_pem("CA", &files.ca, "CERTIFICATE")?;
        Ok(NodeTls { identity: Identity::from_pem(cert, key), ca: Certificate::from_pem(ca) })
    }

    /// The peer port: the node's certificate, and a client certificate the
    /// CA signed required of every caller.
    pub fn peer_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity.clone()).client_ca_root(self.ca.clone())
    }

    /// The client port: the node's certificate; client certificates
    /// checked when presented.
    pub fn api_server(&self) -> ServerTlsConfig {
        self.peer_server().client_auth_optional(true)
    }

    /// Dialling a peer: its certificate checked against the CA, this
    /// node's presented.
    pub fn peer_client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca.clone()).identity(self.identity.clone())
    }
}

/// What a client needs to talk to a TLS cluster: the CA, and a certificate
/// of its own if it has one.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTlsConfig, TlsError> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("CA", ca, "CERTIFICATE")?));
    if let Some((cert, key)) = identity {
        let cert = read_pem("certificate", cert, "CERTIFICATE")?;
        let key = read_pem("key", key, "PRIVATE KEY")?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

/// A throwaway certificate authority, for tests, chaos runs and trying TLS
/// out (`capukv certs`): not for production, where an operator's own PKI
/// issues the certificates.
pub struct TestAuthority {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedPem {
    pub cert: String,
    pub key: String,
}

impl TestAuthority {
    pub fn new(name: &str) -> Result<TestAuthority, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestAuthority { cert, issuer: rcgen::Issuer::new(params, key) })
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `name` that is valid for `hosts` (IP addresses or
    /// DNS names: what peers and clients dial it by), usable both to serve
    /// and to authenticate as a client (a node does both).
    pub fn issue(&self, name: &str, hosts: &[String]) -> Result<IssuedPem, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem { cert: cert.pem(), key: key.serialize_pem() })
    }

    /// Writes `ca.pem` and, for each `(name, hosts)`, `NAME.pem` and
    /// `NAME-key.pem` into `dir`; returns each name's files.
    pub fn write(&self, dir: &Path, members: &[(String, Vec<String>)]) -> std::io::Result<Vec<TlsFiles>> {
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, self.ca_pem())?;
        let mut files = Vec::new();
        for (name, hosts) in members {
            let issued = self.issue(name, hosts).map_err(std::io::Error::other)?;
            let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
            std::fs::write(&cert, issued.cert)?;
            std::fs::write(&key, issued.key)?;
            files.push(TlsFiles { cert, key, ca: ca.clone() });
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_go_together_and_files_must_hold_pem() {
        assert!(files_from_flags(None, None, None).unwrap().is_none());
        let err = files_from_flags(Some("c".into()), None, Some("a".into())).unwrap_err();
        assert_eq!(err.to_string(), "--tls-cert, --tls-key and --tls-ca go together; --tls-key is missing");

        let dir = std::env::temp_dir().join(format!("capukv-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let files = TlsFiles { cert: junk.clone(), key: junk.clone(), ca: junk.clone() };
        let err = NodeTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("junk.pem") && err.contains("no PEM CERTIFICATE block"), "{err}");
        let missing = TlsFiles { cert: dir.join("nope.pem"), ..files };
        let err = NodeTls::load(&missing).unwrap_err().to_string();
        assert!(err.contains("cannot read the TLS certificate") && err.contains("nope.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
