//! The TPM backend against a simulated TPM (PCR_Extend and PCR_Read of the SHA-256 bank,
//! a scriptable failure) and a real event log in a temporary directory: the log replays
//! to the register, entries are written before the extend, a refused extend takes its
//! entry back, and only confidential mode refuses the mount.

use std::io;
use std::sync::{Arc, Mutex};

use layerpass_types::attest::eventlog;
use sha2::{Digest as _, Sha256};

use super::device::TpmDevice;
use super::*;
use crate::events::EventKind;
use crate::measure::layer::tests::layer_event;

/// What the simulated TPM does with the next extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Extend,
    /// Answer this response code.
    Fail(u32),
}

#[derive(Debug)]
struct Sim {
    pcrs: [[u8; 32]; 24],
    next: Next,
    /// The log's length at each extend (what was durable before the register moved).
    log_len_at_extend: Vec<u64>,
    log: Option<PathBuf>,
}

/// A simulated TPM behind the device's stream interface.
#[derive(Debug, Clone)]
struct SimTpm {
    sim: Arc<Mutex<Sim>>,
    response: Arc<Mutex<Vec<u8>>>,
}

impl SimTpm {
    fn new() -> Self {
        Self {
            sim: Arc::new(Mutex::new(Sim {
                pcrs: [[0; 32]; 24],
                next: Next::Extend,
                log_len_at_extend: Vec::new(),
                log: None,
            })),
            response: Arc::default(),
        }
    }

    fn answer(cmd: &[u8], sim: &mut Sim) -> Vec<u8> {
        let cc = u32::from_be_bytes(cmd[6..10].try_into().unwrap());
        let pcr = u32::from_be_bytes(cmd[10..14].try_into().unwrap()) as usize;
        match cc {
            command::CC_PCR_EXTEND => {
                if let Next::Fail(rc) = sim.next {
                    let mut r = vec![0x80, 0x01, 0, 0, 0, 10];
                    r.extend_from_slice(&rc.to_be_bytes());
                    return r;
                }
                let len = sim
                    .log
                    .as_ref()
                    .map_or(0, |p| std::fs::metadata(p).unwrap().len());
                sim.log_len_at_extend.push(len);
                let digest = &cmd[33..65];
                let mut h = Sha256::new();
                h.update(sim.pcrs[pcr]);
                h.update(digest);
                sim.pcrs[pcr] = h.finalize().into();
                vec![
                    0x80, 0x02, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0,
                ]
            }
            command::CC_PCR_READ => {
                let bits = &cmd[17..20];
                let pcr = (0..24).find(|i| bits[i / 8] & (1 << (i % 8)) != 0).unwrap();
                let mut r = vec![0x80, 0x01, 0, 0, 0, 62, 0, 0, 0, 0, 0, 0, 0, 1];
                r.extend_from_slice(&[0, 0, 0, 1, 0, 0x0b, 3]);
                r.extend_from_slice(bits);
                r.extend_from_slice(&[0, 0, 0, 1, 0, 32]);
                r.extend_from_slice(&sim.pcrs[pcr]);
                r
            }
            _ => panic!("unexpected command 0x{cc:x}"),
        }
    }

    fn pcr(&self, pcr: usize) -> [u8; 32] {
        self.sim.lock().unwrap().pcrs[pcr]
    }

    fn set_next(&self, next: Next) {
        self.sim.lock().unwrap().next = next;
    }
}

impl io::Write for SimTpm {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = Self::answer(buf, &mut self.sim.lock().unwrap());
        *self.response.lock().unwrap() = r;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Read for SimTpm {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = std::mem::take(&mut *self.response.lock().unwrap());
        buf[..r.len()].copy_from_slice(&r);
        Ok(r.len())
    }
}

const PCR: u32 = 14;

fn recorder(sim: &SimTpm, dir: &Path, confidential: bool) -> TpmRecorder {
    let log = dir.join(EVENT_LOG);
    sim.sim.lock().unwrap().log = Some(log.clone());
    let device = TpmDevice::from_stream(Path::new("/dev/sim-tpm"), sim.clone());
    let backend = Backend::Tpm {
        device: "/dev/sim-tpm".into(),
        pcr: PCR,
    };
    TpmRecorder::new(
        Tpm::with_device(device, PCR),
        &log,
        &backend,
        FailurePolicy::new(confidential, false),
    )
    .unwrap()
}

fn entries(dir: &Path) -> Vec<eventlog::LogEntry> {
    eventlog::parse(&std::fs::read(dir.join(EVENT_LOG)).unwrap()).unwrap()
}

#[test]
fn the_log_replays_to_the_register_and_each_entry_is_durable_before_its_extend() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimTpm::new();
    let rec = recorder(&sim, dir.path(), true);
    let mounted = [1, 2, 3].map(|r| layer_event(EventKind::Mount, "c1", r));
    rec.record(&mounted).unwrap();
    rec.record(&[layer_event(EventKind::Unmount, "c1", 2)])
        .unwrap();

    let log = entries(dir.path());
    assert_eq!(log.len(), 4);
    assert_eq!(eventlog::replay(&log, PCR), sim.pcr(PCR as usize));
    assert_eq!(rec.read_pcr().unwrap(), sim.pcr(PCR as usize));
    assert_ne!(sim.pcr(PCR as usize), [0; 32]);
    // Every extend happened once its entry (and those before it) was in the file.
    let ends: Vec<u64> = log.iter().map(|e| e.offset + e.len as u64).collect();
    assert_eq!(sim.sim.lock().unwrap().log_len_at_extend, ends);
    let ops: Vec<String> = log
        .iter()
        .map(|e| e.event.as_ref().unwrap().operation.clone())
        .collect();
    assert_eq!(
        ops,
        ["MountLayer", "MountLayer", "MountLayer", "UnmountLayer"]
    );
    let first = log[0].event.as_ref().unwrap();
    assert_eq!(first, &crate::measure::layer::event(&mounted[0]).unwrap());
    let status = rec.measure_status().unwrap();
    assert_eq!(
        (status.backend.as_str(), status.register, status.measured),
        ("tpm", Some(PCR), 4)
    );
    assert_eq!(status.problem, None);
}

#[test]
fn a_refused_extend_fails_in_confidential_mode_and_leaves_log_and_register_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimTpm::new();
    let rec = recorder(&sim, dir.path(), true);
    rec.record(&[layer_event(EventKind::Mount, "c1", 1)])
        .unwrap();
    let before = (
        std::fs::read(dir.path().join(EVENT_LOG)).unwrap(),
        sim.pcr(14),
    );
    sim.set_next(Next::Fail(0x907));
    let err = rec
        .record(&[
            layer_event(EventKind::Mount, "c2", 2),
            layer_event(EventKind::Mount, "c2", 3),
        ])
        .unwrap_err();
    let chain = Chain(&err).to_string();
    assert!(
        chain.starts_with(&format!(
            "measuring container c2's layer {} into PCR 14",
            "02".repeat(32)
        )),
        "{chain}"
    );
    assert!(chain.contains("TPM_RC_LOCALITY"), "{chain}");
    let after = (
        std::fs::read(dir.path().join(EVENT_LOG)).unwrap(),
        sim.pcr(14),
    );
    assert_eq!(before, after, "the refused event left a trace");
    let status = rec.measure_status().unwrap();
    assert_eq!(status.measured, 1);
    assert!(status.problem.unwrap().contains("TPM_RC_LOCALITY"));
    // The TPM recovers: the next event lands after the first.
    sim.set_next(Next::Extend);
    rec.record(&[layer_event(EventKind::Mount, "c3", 4)])
        .unwrap();
    let log = entries(dir.path());
    assert_eq!(log.len(), 2);
    assert_eq!(eventlog::replay(&log, PCR), sim.pcr(14));
}

#[test]
fn outside_confidential_mode_a_failure_is_reported_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimTpm::new();
    let rec = recorder(&sim, dir.path(), false);
    sim.set_next(Next::Fail(0x922));
    rec.record(&[layer_event(EventKind::Mount, "c1", 1)])
        .unwrap();
    let status = rec.measure_status().unwrap();
    assert_eq!(status.measured, 0);
    assert!(status.problem.unwrap().contains("TPM_RC_RETRY"));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_layer_without_verity_is_not_measured_and_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimTpm::new();
    let rec = recorder(&sim, dir.path(), true);
    let mut ev = layer_event(EventKind::Mount, "c1", 1);
    ev.verity = None;
    let err = rec.record(&[ev]).unwrap_err();
    assert!(
        Chain(&err).to_string().contains("no dm-verity"),
        "{}",
        Chain(&err)
    );
    assert!(entries(dir.path()).is_empty());
    assert_eq!(sim.pcr(14), [0; 32]);
}

#[test]
fn an_existing_log_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimTpm::new();
    recorder(&sim, dir.path(), true)
        .record(&[layer_event(EventKind::Mount, "c1", 1)])
        .unwrap();
    // A second agent process (a one-shot unmount) in the same run directory.
    recorder(&sim, dir.path(), true)
        .record(&[layer_event(EventKind::Unmount, "c1", 1)])
        .unwrap();
    let log = entries(dir.path());
    assert_eq!(log.len(), 2);
    assert_eq!(eventlog::replay(&log, PCR), sim.pcr(14));
}
