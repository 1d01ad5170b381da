//! Gatehouse's gRPC interface: the types and service stubs generated from the
//! `.proto` files in `proto/`, for the server (in `gatehouse-api`) and for Rust
//! clients.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use gatehouse_grpc::v1::{GetInfoRequest, system_service_client::SystemServiceClient};
//! let mut client = SystemServiceClient::connect("http://127.0.0.1:3001").await?;
//! let info = client.get_info(GetInfoRequest {}).await?.into_inner();
//! println!("{} {}", info.version, info.installation_id);
//! # Ok(()) }
//! ```

pub mod policy;

/// Version 1 of the Gatehouse API.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("gatehouse.v1");
}

/// The encoded file descriptor set of every Gatehouse proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gatehouse_descriptor.bin"));
