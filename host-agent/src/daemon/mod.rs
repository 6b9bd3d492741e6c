//! The host daemon behind `layerpass serve`.

pub mod config;
