//! layerpass host agent: turns container image layers into EROFS images protected by
//! dm-verity and serves them to virtual machines over vhost-user-blk.
//!
//! Modules follow `DESIGN.md`: [`verity`] builds and checks hash trees. The core knows
//! nothing about vhost-user or ttrpc and works on plain files and buffers.

pub mod api;
pub mod attest;
pub mod compression;
pub mod containerd;
pub mod convert;
pub mod daemon;
pub mod erofs;
pub mod export;
pub mod fshint;
pub mod guest;
pub mod image;
pub mod kata;
pub mod microvm;
pub mod plan;
pub mod ratelog;
pub mod run;
pub mod state;
pub mod verity;
pub mod vhost;
