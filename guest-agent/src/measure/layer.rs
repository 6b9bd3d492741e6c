//! A recorded layer as the event a backend measures: `github.com/layerpass`,
//! `MountLayer` or `UnmountLayer`, and the layer's measurement in canonical JSON.

use layerpass_types::attest::{AttestError, Event, LayerMeasurement, Operation};

use crate::events::{EventKind, LayerEvent};

/// Why a layer cannot be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// A layer mounted without dm-verity has no root hash to measure.
    #[error("layer {root_hash:?} of container {container} has no dm-verity parameters to measure")]
    NoVerity {
        /// The container.
        container: String,
        /// The root hash recorded (empty).
        root_hash: String,
    },
    /// A field the measurement format refuses.
    #[error("invalid measurement of container {container}'s layer")]
    Invalid {
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: AttestError,
    },
}

/// The operation an event records.
pub fn operation(kind: EventKind) -> Operation {
    match kind {
        EventKind::Mount => Operation::MountLayer,
        EventKind::Unmount => Operation::UnmountLayer,
    }
}

/// The layer's measurement: container id, digest, root hash and the dm-verity geometry
/// of the device in use (hash algorithm, salt, data size = data blocks × data block size,
/// corruption mode), checked.
pub fn measurement(ev: &LayerEvent) -> Result<LayerMeasurement, LayerError> {
    let Some(verity) = &ev.verity else {
        return Err(LayerError::NoVerity {
            container: ev.container_id.clone(),
            root_hash: ev.root_hash.clone(),
        });
    };
    let m = LayerMeasurement {
        container_id: ev.container_id.clone(),
        digest: ev.digest.clone(),
        root_hash: ev.root_hash.clone(),
        hash_algorithm: verity.algorithm.clone(),
        salt: verity.salt.clone(),
        data_size: verity
            .data_blocks
            .saturating_mul(u64::from(verity.data_block_size)),
        corruption: verity.on_corruption.clone(),
    };
    m.validate().map_err(|source| LayerError::Invalid {
        container: ev.container_id.clone(),
        source,
    })?;
    Ok(m)
}

/// The event measured for `ev`.
pub fn event(ev: &LayerEvent) -> Result<Event, LayerError> {
    Ok(Event::layer(operation(ev.event), &measurement(ev)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{UpperEvent, VerityEvent};

    /// A recorded layer with verity: 10 blocks of 4096 bytes.
    pub(crate) fn layer_event(kind: EventKind, container: &str, root: u8) -> LayerEvent {
        LayerEvent {
            event: kind,
            container_id: container.into(),
            digest: Some(format!("sha256:{}", "22".repeat(32))),
            root_hash: format!("{root:02x}").repeat(32),
            verity: Some(VerityEvent {
                algorithm: "sha256".into(),
                format: 1,
                data_block_size: 4096,
                hash_block_size: 4096,
                data_blocks: 10,
                hash_start_block: 11,
                salt: "00ff".into(),
                on_corruption: "eio".into(),
            }),
            shared: false,
            mount_point: "/run/layerpass/rootfs/c1".into(),
            upper: UpperEvent::Tmpfs { size_bytes: 1 },
            time: "t".into(),
        }
    }

    #[test]
    fn a_layer_event_becomes_its_canonical_measurement() {
        let ev = layer_event(EventKind::Mount, "c1", 0xab);
        let event = event(&ev).unwrap();
        assert_eq!(event.domain, "github.com/layerpass");
        assert_eq!(event.operation, "MountLayer");
        assert_eq!(
            event.content,
            format!(
                concat!(
                    r#"{{"container_id":"c1","corruption":"eio","data_size":40960,"#,
                    r#""digest":"sha256:{}","hash_algorithm":"sha256","root_hash":"{}","#,
                    r#""salt":"00ff"}}"#
                ),
                "22".repeat(32),
                "ab".repeat(32)
            )
        );
        let unmount = layer_event(EventKind::Unmount, "c1", 0xab);
        assert_eq!(super::event(&unmount).unwrap().operation, "UnmountLayer");
        let mut no_digest = ev.clone();
        no_digest.digest = None;
        assert!(
            super::event(&no_digest)
                .unwrap()
                .content
                .contains(r#""digest":null"#)
        );
    }

    #[test]
    fn layers_without_verity_or_with_bad_fields_are_not_measured() {
        let mut ev = layer_event(EventKind::Mount, "c1", 1);
        ev.verity = None;
        ev.root_hash = String::new();
        assert!(matches!(event(&ev), Err(LayerError::NoVerity { .. })));
        let mut ev = layer_event(EventKind::Mount, "c1", 1);
        ev.root_hash = "AB".repeat(32);
        let err = event(&ev).unwrap_err();
        assert!(
            matches!(
                &err,
                LayerError::Invalid {
                    source: AttestError::Field {
                        field: "root_hash",
                        ..
                    },
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
