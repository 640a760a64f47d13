//! Helpers shared by the integration tests and the benchmark: clients over TCP and unix
//! sockets, Objects, a scratch directory.

#![allow(dead_code)]

use coprocess_grpc::codec::RawObject;
use coprocess_grpc::pb::dispatcher_client::DispatcherClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = DispatcherClient<Channel>;

/// A client over TCP.
pub async fn tcp_client(addr: std::net::SocketAddr) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().tcp_nodelay(true).connect().await.unwrap();
    DispatcherClient::new(channel).max_decoding_message_size(64 << 20)
}

/// A channel over a unix socket (the URI is a placeholder: the connector ignores it).
pub async fn unix_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

/// A client over a unix socket.
pub async fn unix_client(path: &Path) -> Client {
    DispatcherClient::new(unix_channel(path).await).max_decoding_message_size(64 << 20)
}

/// Dispatch encoded bytes.
pub async fn dispatch(client: &mut Client, bytes: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    client.dispatch(RawObject::from(bytes)).await.map(|r| r.into_inner().0.to_vec())
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coprocess-grpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The SPEC's HMAC vector (key `c2VjcmV0`, hmac-sha512 over `date: <DATE>`).
pub const HMAC_DATE: &str = "Fri, 03 May 2024 12:00:42 GMT";
pub const HMAC_SECRET: &str = "c2VjcmV0";
pub const HMAC_SIGNATURE: &str =
    "9kwBK/yrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp+A==";

/// The HMAC-auth Object the benchmark and tests send (CustomKeyCheck, the SPEC vector).
pub fn hmac_object(signature: &str) -> coprocess::Object {
    coprocess::testing::ObjectBuilder::new(coprocess::HookType::CustomKeyCheck, "HMACSignatureAuth")
        .method_url("GET", "/v1/items", "/v1/items")
        .header("Date", HMAC_DATE)
        .header("Authorization", &format!("Signature keyId=\"k1\",algorithm=\"hmac-sha512\",signature=\"{signature}\""))
        .header("User-Agent", "bench/1.0")
        .header("Accept", "application/json")
        .build()
}

/// Global configuration for the HMAC object: key `k1`, Date check off (the vector is fixed).
pub fn hmac_config() -> serde_json::Value {
    serde_json::json!({"HMACSignatureAuth": {"keys": {"k1": HMAC_SECRET}, "clock_skew_ms": 0, "session": {"rate": 100, "per": 1}}})
}
