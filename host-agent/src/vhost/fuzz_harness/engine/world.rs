//! One run's frontends: at most one per disk, driven step by step.

use super::super::HarnessError;
use super::guest::Guest;
use super::messages;
use super::program::{Op, Step};
use super::{EngineOutcome, EngineViolation, Served};

/// The run's state.
pub struct World<'h> {
    served: &'h [Served],
    guests: Vec<Option<Guest>>,
    /// Connections made per disk (the engine must have accepted as many at the end).
    pub connects: Vec<u64>,
    pub outcome: EngineOutcome,
    pattern: u8,
}

impl<'h> World<'h> {
    pub fn new(served: &'h [Served]) -> Self {
        Self {
            served,
            guests: served.iter().map(|_| None).collect(),
            connects: vec![0; served.len()],
            outcome: EngineOutcome::default(),
            pattern: 0,
        }
    }

    /// Runs the steps, stopping at the first violation (named with its step).
    pub fn execute(&mut self, steps: &[Step]) -> Result<(), HarnessError> {
        for (i, s) in steps.iter().enumerate() {
            let disk = usize::from(s.disk) % self.served.len();
            match self.step(disk, s) {
                Ok(()) => self.outcome.steps += 1,
                Err(HarnessError::Engine(v)) => {
                    return Err(EngineViolation::Step {
                        step: i,
                        op: name(&s.op),
                        disk,
                        source: Box::new(v),
                    }
                    .into());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops every frontend of the run.
    pub fn end(mut self) -> (Vec<u64>, EngineOutcome) {
        self.guests.clear();
        (self.connects, self.outcome)
    }

    fn connect(&mut self, disk: usize) -> Result<Guest, HarnessError> {
        let s = &self.served[disk];
        let g = Guest::connect(s.export.socket(), s.info)?;
        self.connects[disk] += 1;
        self.outcome.connections += 1;
        Ok(g)
    }

    fn step(&mut self, disk: usize, s: &Step) -> Result<(), HarnessError> {
        let q = usize::from(s.queue);
        match &s.op {
            Op::Connect => {
                // A reconnect: the old connection goes first, as a VMM's would.
                self.guests[disk] = None;
                let mut g = self.connect(disk)?;
                if s.flag {
                    bring_up(&mut g, s.queue == 1)?;
                }
                self.guests[disk] = Some(g);
                return Ok(());
            }
            Op::Disconnect => {
                self.guests[disk] = None;
                return Ok(());
            }
            Op::Garbage(bytes) => return self.garbage(disk, s.flag, bytes),
            _ => {}
        }
        let Some(g) = self.guests[disk].as_mut() else {
            return Ok(());
        };
        let o = &mut self.outcome;
        match &s.op {
            Op::Handshake {
                steps,
                features,
                protocol,
            } => g.handshake(*steps, *features, *protocol)?,
            Op::MemTable { layout, free } => {
                o.tables += usize::from(g.set_mem_table(messages::table(*layout, *free))?);
            }
            Op::AddRegion { first, pages } => {
                o.tables += usize::from(g.add_region(*first, *pages)?);
            }
            Op::RemoveRegion { which } => o.tables += usize::from(g.remove_region(*which)?),
            Op::Setup { steps, size } => g.setup(q, *steps, *size)?,
            Op::VringNum { size } => g.vring_num(q, super::vrings::size(*size))?,
            Op::VringAddr { mode, pages } => g.vring_addr(q, *mode, *pages)?,
            Op::VringBase { value } => g.vring_base(q, *value)?,
            Op::VringCall => g.vring_call(q)?,
            Op::VringKick => g.vring_kick(q)?,
            Op::VringEnable => g.vring_enable(q, !s.flag)?,
            Op::GetVringBase => {
                if g.get_vring_base(q)? {
                    o.vring_bases += 1;
                }
            }
            Op::Submit(reqs) => {
                self.pattern = self.pattern.wrapping_add(1);
                let done = g.submit(q, reqs, self.pattern)?;
                o.submitted += done.requests;
                if done.required {
                    o.completed += done.requests;
                }
            }
            Op::Connect | Op::Disconnect | Op::Garbage(_) => {}
        }
        if g.dead {
            self.guests[disk] = None;
            self.outcome.dropped += 1;
        }
        Ok(())
    }

    /// Bytes no frontend would send, on the disk's connection (or a fresh one), which then
    /// closes: the engine must end that connection and go on serving the others.
    fn garbage(&mut self, disk: usize, header: bool, bytes: &[u8]) -> Result<(), HarnessError> {
        let socket = match self.guests[disk].take() {
            Some(g) => g.into_socket(),
            None => {
                let path = self.served[disk].export.socket();
                let s = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
                    EngineViolation::Connect {
                        socket: path.to_owned(),
                        source,
                    }
                })?;
                self.connects[disk] += 1;
                self.outcome.connections += 1;
                s
            }
        };
        let mut msg = Vec::with_capacity(12 + bytes.len());
        if header {
            // Request code, flags (version 1), size; then whatever follows, if anything.
            let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
            msg.extend(u32::from(at(0)).to_le_bytes());
            msg.extend(1u32.to_le_bytes());
            msg.extend([at(1), at(2), at(3), at(4)]);
            msg.extend(bytes.get(5..).unwrap_or_default());
        } else {
            msg.extend(bytes);
        }
        // The backend may have closed already: no SIGPIPE, and the error does not matter.
        let _ = rustix::net::send(&socket, &msg, rustix::net::SendFlags::NOSIGNAL);
        self.outcome.garbage += 1;
        Ok(())
    }
}

/// A frontend brought up as a VMM does: the full handshake (REPLY_ACK and every protocol
/// feature offered; EVENT_IDX if asked), one region over guest RAM, every queue of 64
/// entries at its standard rings, started and enabled.
pub fn bring_up(g: &mut Guest, event_idx: bool) -> Result<(), HarnessError> {
    g.handshake(0x7f, 0x1e | u8::from(event_idx), 0x0f)?;
    g.set_mem_table(messages::table(0, [0; 6]))?;
    for q in 0..g.disk.queues {
        g.setup(q, 0x3f, 6)?;
    }
    Ok(())
}

fn name(op: &Op) -> &'static str {
    match op {
        Op::Connect => "connect",
        Op::Handshake { .. } => "handshake",
        Op::MemTable { .. } => "SET_MEM_TABLE",
        Op::AddRegion { .. } => "ADD_MEM_REG",
        Op::RemoveRegion { .. } => "REM_MEM_REG",
        Op::Setup { .. } => "queue set-up",
        Op::VringNum { .. } => "SET_VRING_NUM",
        Op::VringAddr { .. } => "SET_VRING_ADDR",
        Op::VringBase { .. } => "SET_VRING_BASE",
        Op::VringCall => "SET_VRING_CALL",
        Op::VringKick => "SET_VRING_KICK",
        Op::VringEnable => "SET_VRING_ENABLE",
        Op::GetVringBase => "GET_VRING_BASE",
        Op::Submit(_) => "submit",
        Op::Disconnect => "disconnect",
        Op::Garbage(_) => "garbage",
    }
}
