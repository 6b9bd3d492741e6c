//! A disk served by its own vhost engine, for tests that need one socket.

use std::path::Path;
use std::sync::Arc;

use layerpass::export::Disk;
use layerpass::vhost::{Engine, EngineConfig, Export, VhostError};

/// An engine serving one disk. Dropping it stops the export, then the engine.
#[derive(Debug)]
pub struct Served {
    // Field order: the export ends before its engine.
    export: Export,
    engine: Engine,
}

impl Served {
    /// Serves `disk` on `socket` with `queues` queues and the default engine settings.
    pub fn start(socket: &Path, disk: Arc<dyn Disk>, queues: usize) -> Result<Self, VhostError> {
        Self::with_config(socket, disk, queues, EngineConfig::default())
    }

    /// Serves `disk` with an engine configured as given.
    pub fn with_config(
        socket: &Path,
        disk: Arc<dyn Disk>,
        queues: usize,
        config: EngineConfig,
    ) -> Result<Self, VhostError> {
        let engine = Engine::start(config)?;
        let export = engine.serve(socket, disk, queues)?;
        Ok(Self { export, engine })
    }

    pub fn socket(&self) -> &Path {
        self.export.socket()
    }

    pub fn export(&self) -> &Export {
        &self.export
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
