//! Mutual TLS on both ports: a TLS cluster serves clients that trust its
//! CA, and nobody without a certificate of that CA speaks Raft to it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use capukv::Client;
use capukv::proto::{self, raft_client::RaftClient, raft_message::Body};
use capukv::tls::{Holder, TestAuthority, client_config};
use common::LocalCluster;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const FORGED_TERM: u64 = 1_000_000;

/// A client of `cluster` configured by `tls`, answering within 2 s.
fn client_with(cluster: &LocalCluster, tls: Option<ClientTlsConfig>) -> Client {
    let mut client = Client::new(cluster.endpoints()).unwrap();
    if let Some(tls) = tls {
        client = client.with_tls(tls).unwrap();
    }
    client.timeout = Duration::from_secs(2);
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_serves_clients_that_trust_its_ca_and_no_one_else() {
    let cluster = LocalCluster::start_tls(3).await;
    let client = cluster.client();
    client.put("k", "v").await.unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap().value, Bytes::from("v"));
    // The CLI with the CA alone: a client certificate is optional on the client port.
    let (code, out, err) = cluster.cli(&["get", "k"]);
    assert_eq!((code, out.trim()), (0, "v"), "{err}");
    let ca = &cluster.tls.as_ref().unwrap().1.ca;
    client_with(&cluster, Some(client_config(ca, None).unwrap())).get("k").await.expect("CA only");

    // Plain text to a TLS port: no answer.
    assert!(client_with(&cluster, None).get("k").await.is_err(), "a plain client is not served");
    // Another CA's certificate, presented: refused.
    let other = TestAuthority::new("another CA").unwrap();
    let stranger = other.write(&cluster.root.join("other"), &[Holder::client("stranger")]).unwrap().remove(0);
    let presented = client_config(ca, Some((&stranger.cert, &stranger.key))).unwrap();
    assert!(client_with(&cluster, Some(presented)).get("k").await.is_err(), "a certificate of another CA");
    // A client that trusts another CA does not trust the nodes.
    let doubting = client_config(&stranger.ca, None).unwrap();
    assert!(client_with(&cluster, Some(doubting)).get("k").await.is_err(), "the nodes' certificates are checked");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_peer_port_speaks_only_to_holders_of_a_certificate_of_the_cluster_ca() {
    let cluster = LocalCluster::start_tls(3).await;
    let status = cluster.client().status_of(&cluster.node(3).api).await.unwrap();
    let (nodes, _) = cluster.tls.as_ref().unwrap();
    let ca = Certificate::from_pem(std::fs::read(&nodes[0].ca).unwrap());
    let other = TestAuthority::new("another CA").unwrap();
    let stranger = other.write(&cluster.root.join("other"), &[Holder::node(2, vec!["127.0.0.1".into()])]).unwrap();
    let pem =
        |f: &capukv::tls::TlsFiles| Identity::from_pem(std::fs::read(&f.cert).unwrap(), std::fs::read(&f.key).unwrap());
    let stranger = pem(&stranger[0]);
    // The cluster's own client certificate: signed by the right CA, but no node's.
    let client = pem(&cluster.tls.as_ref().unwrap().1);
    // A message node 3 would step (its cluster's id, from member 2), sent
    // with no client certificate, with another CA's certificate for node
    // 2, and with the cluster CA's client certificate.
    let forged = proto::RaftMessage {
        from: 2,
        to: 3,
        term: FORGED_TERM,
        cluster_id: status.cluster_id,
        body: Some(Body::Heartbeat(proto::Heartbeat { commit: 0, read_round: 0 })),
    };
    for identity in [None, Some(stranger), Some(client)] {
        let mut tls = ClientTlsConfig::new().ca_certificate(ca.clone());
        if let Some(identity) = identity.clone() {
            tls = tls.identity(identity);
        }
        let endpoint =
            Endpoint::from_shared(format!("https://{}", cluster.node(3).raft)).unwrap().tls_config(tls).unwrap();
        // The refusal shows at the handshake or at the first call (TLS 1.3
        // checks the client's certificate after the client sent its request).
        let refused = match endpoint.connect().await {
            Err(_) => true,
            Ok(channel) => RaftClient::new(channel).send(tokio_stream::iter([forged.clone()])).await.is_err(),
        };
        assert!(
            refused,
            "a peer with {} is refused",
            if identity.is_some() { "that certificate" } else { "no certificate" }
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = cluster.client().status_of(&cluster.node(3).api).await.unwrap().term;
    assert!(term < FORGED_TERM, "node 3's term did not move: {term}");
    cluster.client().put("k", "v").await.expect("the cluster still serves over TLS");
}
