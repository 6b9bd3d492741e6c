//! The hand-written commands against a real TPM 2.0 implementation (swtpm, the TCG
//! reference code): the extend lands where PCR_Read and the event log's replay say, and
//! the reference implementation refuses PCR 17 from locality 0 with TPM_RC_LOCALITY.

use std::os::unix::net::UnixStream;

use layerpass_test_support::swtpm::Swtpm;
use layerpass_types::attest::eventlog;

use super::device::TpmDevice;
use super::*;
use crate::events::EventKind;
use crate::measure::layer::tests::layer_event;

/// A fresh connection to the TPM (swtpm serves one client at a time: each `Tpm` keeps
/// its connection, so only one may be open).
fn tpm(sw: &Swtpm, pcr: u32) -> Tpm {
    let stream = UnixStream::connect(sw.data_socket()).unwrap();
    Tpm::with_device(TpmDevice::from_stream(sw.data_socket(), stream), pcr)
}

#[test]
fn swtpm_extends_pcr_14_as_the_event_log_replays() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sw) = Swtpm::server(dir.path()) else {
        return;
    };
    let backend = Backend::Tpm {
        device: sw.data_socket().to_owned(),
        pcr: 14,
    };
    let log = dir.path().join(EVENT_LOG);
    let rec = TpmRecorder::new(
        tpm(&sw, 14),
        &log,
        &backend,
        FailurePolicy::new(true, false),
    )
    .unwrap();
    assert_eq!(rec.read_pcr().unwrap(), [0; 32], "a fresh TPM's PCR 14");
    let events = [1, 2, 3].map(|r| layer_event(EventKind::Mount, "c1", r));
    rec.record(&events).unwrap();
    let entries = eventlog::parse(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(eventlog::replay(&entries, 14), rec.read_pcr().unwrap());
}

#[test]
fn swtpm_refuses_pcr_17_from_locality_0() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sw) = Swtpm::server(dir.path()) else {
        return;
    };
    let mut t = tpm(&sw, 17);
    let err = t.extend(&[0xaa; 32]).unwrap_err();
    match &err {
        TpmError::Response {
            source: ResponseError::Failed { code },
            pcr: 17,
            ..
        } => assert_eq!(*code, command::RC_LOCALITY),
        other => panic!("{other:?}"),
    }
    assert!(Chain(&err).to_string().contains("TPM_RC_LOCALITY"));
    drop(t);
    // PCR 14 takes the same extend.
    let mut t14 = tpm(&sw, 14);
    t14.extend(&[0xaa; 32]).unwrap();
    assert_ne!(t14.read().unwrap(), [0; 32]);
}
