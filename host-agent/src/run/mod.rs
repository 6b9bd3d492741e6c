//! `layerpass run`: a container image in a microVM.

pub mod error;
pub mod process;
pub mod sample;

pub use error::RunError;
