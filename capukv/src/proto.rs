//! The generated protobuf and gRPC code (proto/capukv.proto).
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("capukv");
