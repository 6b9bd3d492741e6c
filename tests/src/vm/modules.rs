//! Kernel modules for the guest: the product's resolver ([`layerpass::microvm::modules`]).

pub use layerpass::microvm::modules::{DEFAULT_MODULES, Module, guest_path, module_name};

use anyhow::Result;

use super::assets::Kernel;

/// The modules to load for `wanted`, dependencies first, each once; built-in ones left out.
pub fn resolve(kernel: &Kernel, wanted: &[&str]) -> Result<Vec<Module>> {
    Ok(layerpass::microvm::modules::resolve(kernel, wanted)?)
}
