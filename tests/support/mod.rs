//! Test support shared by the end-to-end tests.

#![allow(dead_code, unreachable_pub)]

pub mod loopback;
pub mod redis_server;
pub mod relay;
pub mod spans;
pub mod wait;
