//! Mutual TLS on both ports (rustls, through tonic): optional, off by
//! default. A node is given its certificate and key and the CA that signs
//! every node's (and client's) certificate:
//!
//! - the peer port requires TLS both ways: a node accepts Raft traffic only
//!   from a holder of a certificate the CA signed that names a node (the
//!   DNS name [`node_name`], e.g. `node-2.capukv`), and believes a message
//!   comes from node N only when the certificate names node N; it checks
//!   the peer it dials against the CA and the peer's address (the
//!   certificate also names the host it is reached at);
//! - the client port presents the node's certificate; a client certificate
//!   is checked against the CA when one is presented, and not required.
//!
//! Files are PEM. A certificate, key or CA that cannot be read, or that
//! holds no PEM block of its kind, is a startup error naming the file.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::raft::NodeId;

/// The name a node's certificate carries (a DNS subject alternative name
/// besides its hosts): it is what makes a certificate a node's, and which.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.capukv")
}

/// Which of `members` a certificate (DER) names with [`node_name`] (as
/// webpki matches a server name); `None` when it names none of them,
/// several (a wildcard), or cannot be read.
pub fn node_of(der: &[u8], members: impl IntoIterator<Item = NodeId>) -> Option<NodeId> {
    let der = rustls_pki_types::CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    let mut named = members.into_iter().filter(|&id| {
        let name = node_name(id);
        rustls_pki_types::ServerName::try_from(name.as_str())
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    });
    let id = named.next()?;
    named.next().is_none().then_some(id)
}

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

/// A certificate (PEM, and DER) and its key (PEM).
#[derive(Debug, Clone)]
pub struct IssuedPem {
    pub cert: String,
    pub cert_der: Vec<u8>,
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
    /// and to authenticate as a client (a node does both); a node's names
    /// it ([`node_name`]).
    pub fn issue(&self, name: &str, hosts: &[String], node: Option<NodeId>) -> Result<IssuedPem, rcgen::Error> {
        let mut names = hosts.to_vec();
        names.extend(node.map(node_name));
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedPem { cert: cert.pem(), cert_der: cert.der().to_vec(), key: key.serialize_pem() })
    }

    /// Writes `ca.pem` and, for each holder, `NAME.pem` and `NAME-key.pem`
    /// (readable by the owner only) into `dir`; returns each one's files.
    pub fn write(&self, dir: &Path, holders: &[Holder]) -> std::io::Result<Vec<TlsFiles>> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, self.ca_pem())?;
        let mut files = Vec::new();
        for h in holders {
            let issued = self.issue(&h.name, &h.hosts, h.node).map_err(std::io::Error::other)?;
            let (cert, key) = (dir.join(format!("{}.pem", h.name)), dir.join(format!("{}-key.pem", h.name)));
            std::fs::write(&cert, issued.cert)?;
            let mut key_file =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&key)?;
            std::io::Write::write_all(&mut key_file, issued.key.as_bytes())?;
            files.push(TlsFiles { cert, key, ca: ca.clone() });
        }
        Ok(files)
    }
}

/// Who a [`TestAuthority`] issues a certificate to.
#[derive(Debug, Clone)]
pub struct Holder {
    /// Its files are `NAME.pem` and `NAME-key.pem`.
    pub name: String,
    /// The hosts it is dialled by.
    pub hosts: Vec<String>,
    /// The node it is, if it is one.
    pub node: Option<NodeId>,
}

impl Holder {
    /// Node `id` (its files `nID.pem`), dialled by `hosts`.
    pub fn node(id: NodeId, hosts: Vec<String>) -> Holder {
        Holder { name: format!("n{id}"), hosts, node: Some(id) }
    }

    /// A client, which names no node (its files `NAME.pem`).
    pub fn client(name: &str) -> Holder {
        Holder { name: name.into(), hosts: vec!["localhost".into()], node: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_node_and_a_client_certificate_none() {
        let ca = TestAuthority::new("t").unwrap();
        let node = ca.issue("n2", &["127.0.0.1".into()], Some(2)).unwrap();
        assert_eq!(node_of(&node.cert_der, [1, 2, 3]), Some(2));
        assert_eq!(node_of(&node.cert_der, [1, 3]), None, "not a member");
        let client = ca.issue("client", &["localhost".into()], None).unwrap();
        assert_eq!(node_of(&client.cert_der, [1, 2, 3]), None);
        let wildcard = ca.issue("any", &["*.capukv".into()], None).unwrap();
        assert_eq!(node_of(&wildcard.cert_der, [1, 2, 3]), None, "a certificate naming every node names none");
        assert_eq!(node_of(b"not a certificate", [1, 2, 3]), None);
    }

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
