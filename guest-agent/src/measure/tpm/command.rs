//! The two TPM 2.0 commands the agent sends, encoded and their responses parsed by hand
//! (TPM 2.0 Library, Part 3 §22.2 `TPM2_PCR_Extend` and §22.4 `TPM2_PCR_Read`; the
//! structures of Part 2). All integers are big-endian.
//!
//! Parsing is strict: the tag, the size field (equal to the bytes received), the
//! response code, every count and length, and no trailing bytes. A response that is not
//! exactly what the command calls for is an error, never a value.

use std::fmt;

/// `TPM_ST_NO_SESSIONS`: a command or response without an authorization area.
const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`: a command or response with an authorization area.
const ST_SESSIONS: u16 = 0x8002;
/// `TPM_CC_PCR_Extend`.
pub const CC_PCR_EXTEND: u32 = 0x0000_0182;
/// `TPM_CC_PCR_Read`.
pub const CC_PCR_READ: u32 = 0x0000_017E;
/// `TPM_RS_PW`: the password authorization session (here with the empty password, the
/// PCRs' default `authValue`).
const RS_PW: u32 = 0x4000_0009;
/// `TPMA_SESSION.continueSession`.
const CONTINUE_SESSION: u8 = 0x01;
/// `TPM_ALG_SHA256`.
const ALG_SHA256: u16 = 0x000B;
/// A SHA-256 digest's size.
pub const SHA256_LEN: usize = 32;
/// The PCRs a PC-client TPM has: 0 to 23 (`TPM_PT_PCR_COUNT`).
pub const PCR_COUNT: u32 = 24;
/// Bytes of a PCR selection bitmap for 24 PCRs.
const SELECT_LEN: u8 = 3;
/// Bytes of a response header: tag, size, response code.
pub const HEADER_LEN: usize = 10;
/// The largest response accepted (`TPM_PT_MAX_RESPONSE_SIZE` is 4096 on PC-client TPMs).
pub const MAX_RESPONSE_LEN: usize = 4096;

/// A TPM response code (`TPM_RC`) other than `TPM_RC_SUCCESS`, named when it is one the
/// agent can meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

/// `TPM_RC_LOCALITY`: the command is not allowed at the locality it came from (Linux
/// sends everything at locality 0; PCRs 17 to 22 take extends only from localities 2
/// to 4).
pub const RC_LOCALITY: ResponseCode = ResponseCode(0x0907);

impl ResponseCode {
    /// The code's name in the specification, for the codes the two commands can get.
    pub fn name(self) -> Option<&'static str> {
        // Codes with layer bits (a resource manager's, a TSS's) are not the TPM's own.
        if self.0 > 0xFFF {
            return None;
        }
        // Format-1 codes (bit 7) carry the handle, session or parameter number in bits
        // 8 to 11 and a parameter flag in bit 6; the error itself is bits 0 to 5.
        let code = if self.0 & 0x080 != 0 {
            self.0 & 0x0BF
        } else {
            self.0
        };
        Some(match code {
            0x01E => "TPM_RC_BAD_TAG",
            0x100 => "TPM_RC_INITIALIZE",
            0x101 => "TPM_RC_FAILURE",
            0x120 => "TPM_RC_DISABLED",
            0x127 => "TPM_RC_PCR",
            0x143 => "TPM_RC_COMMAND_CODE",
            0x142 => "TPM_RC_COMMAND_SIZE",
            0x083 => "TPM_RC_HASH",
            0x084 => "TPM_RC_VALUE",
            0x08B => "TPM_RC_HANDLE",
            0x08E => "TPM_RC_AUTH_FAIL",
            0x095 => "TPM_RC_SIZE",
            0x0907 => "TPM_RC_LOCALITY",
            0x0908 => "TPM_RC_YIELDED",
            0x090A => "TPM_RC_TESTING",
            0x0921 => "TPM_RC_LOCKOUT",
            0x0922 => "TPM_RC_RETRY",
            _ => return None,
        })
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:x})", self.0),
            None => write!(f, "0x{:x}", self.0),
        }
    }
}

/// Why a response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Fewer bytes than the header, or than a field needs.
    #[error("the response ends at byte {len}, inside its {field}")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// The field cut short.
        field: &'static str,
    },
    /// The size field does not match the bytes received.
    #[error("the response's size field says {declared} bytes, {received} were received")]
    SizeMismatch {
        /// The size field.
        declared: u32,
        /// Bytes received.
        received: usize,
    },
    /// The TPM failed the command.
    #[error("the TPM answered {code}{}", locality_hint(*code))]
    Failed {
        /// The response code.
        code: ResponseCode,
    },
    /// A tag other than the one the command calls for.
    #[error("the response's tag is 0x{found:04x}, not 0x{expected:04x}")]
    Tag {
        /// The tag received.
        found: u16,
        /// The tag expected.
        expected: u16,
    },
    /// A field holds a value the command does not allow.
    #[error("the response's {field} is {found}, not {expected}")]
    Field {
        /// The field.
        field: &'static str,
        /// What it holds.
        found: u64,
        /// What it must hold.
        expected: u64,
    },
    /// Bytes after the last field.
    #[error("{extra} bytes follow the response's last field")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

fn locality_hint(code: ResponseCode) -> &'static str {
    if code == RC_LOCALITY {
        ": the PCR does not accept extends from locality 0, where Linux talks to the TPM \
         (PCRs 17 to 22 need localities 2 to 4)"
    } else {
        ""
    }
}

/// The command header: tag, size (filled in by [`finish`]), command code.
fn header(tag: u16, cc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&cc.to_be_bytes());
    out
}

/// Writes the command's size into its header.
fn finish(mut out: Vec<u8>) -> Vec<u8> {
    // A command here is under 100 bytes.
    let size = u32::try_from(out.len()).unwrap_or(u32::MAX).to_be_bytes();
    out[2..6].copy_from_slice(&size);
    out
}

/// `TPM2_PCR_Extend(pcr, {SHA-256: digest})` authorized by a password session with the
/// empty password: the PCR becomes SHA-256(PCR ‖ digest) in the SHA-256 bank.
pub fn pcr_extend(pcr: u32, digest: &[u8; SHA256_LEN]) -> Vec<u8> {
    let mut out = header(ST_SESSIONS, CC_PCR_EXTEND);
    // pcrHandle: a PCR's handle is its index (TPM_HT_PCR, 0x00).
    out.extend_from_slice(&pcr.to_be_bytes());
    // authorizationSize, then TPMS_AUTH_COMMAND: sessionHandle, nonce (empty),
    // sessionAttributes, hmac (the password: empty).
    out.extend_from_slice(&9u32.to_be_bytes());
    out.extend_from_slice(&RS_PW.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.push(CONTINUE_SESSION);
    out.extend_from_slice(&0u16.to_be_bytes());
    // TPML_DIGEST_VALUES: count, then TPMT_HA { hashAlg, digest }.
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&ALG_SHA256.to_be_bytes());
    out.extend_from_slice(digest);
    finish(out)
}

/// The PCR selection bitmap naming one PCR.
fn select(pcr: u32) -> [u8; SELECT_LEN as usize] {
    let mut bits = [0u8; SELECT_LEN as usize];
    // The caller checked pcr < PCR_COUNT; the modulo keeps the index in range anyway.
    let byte = usize::try_from(pcr / 8).unwrap_or(0) % bits.len();
    bits[byte] = 1 << (pcr % 8);
    bits
}

/// `TPM2_PCR_Read` of one PCR of the SHA-256 bank.
pub fn pcr_read(pcr: u32) -> Vec<u8> {
    let mut out = header(ST_NO_SESSIONS, CC_PCR_READ);
    // TPML_PCR_SELECTION: count, then TPMS_PCR_SELECTION { hash, sizeofSelect, pcrSelect }.
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&ALG_SHA256.to_be_bytes());
    out.push(SELECT_LEN);
    out.extend_from_slice(&select(pcr));
    finish(out)
}

/// Reads big-endian fields from a response, naming the field a short read was in.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ResponseError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(ResponseError::Truncated {
                len: self.buf.len(),
                field,
            });
        };
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ResponseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ResponseError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, ResponseError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ResponseError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A field that must hold `expected`.
    fn expect(
        &mut self,
        field: &'static str,
        expected: u64,
        width: usize,
    ) -> Result<(), ResponseError> {
        let found = match width {
            1 => u64::from(self.u8(field)?),
            2 => u64::from(self.u16(field)?),
            _ => u64::from(self.u32(field)?),
        };
        if found == expected {
            Ok(())
        } else {
            Err(ResponseError::Field {
                field,
                found,
                expected,
            })
        }
    }

    fn end(&self) -> Result<(), ResponseError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            extra => Err(ResponseError::Trailing { extra }),
        }
    }
}

/// Checks the header: the size field against the bytes received, the response code, the
/// tag of a successful response. Returns a reader past the header.
fn parse_header(response: &[u8], tag: u16) -> Result<Reader<'_>, ResponseError> {
    let mut r = Reader {
        buf: response,
        at: 0,
    };
    let found_tag = r.u16("header")?;
    let declared = r.u32("header")?;
    let code = r.u32("header")?;
    if usize::try_from(declared).ok() != Some(response.len()) {
        return Err(ResponseError::SizeMismatch {
            declared,
            received: response.len(),
        });
    }
    if code != 0 {
        // An error response has no body and the tag TPM_ST_NO_SESSIONS.
        if found_tag != ST_NO_SESSIONS {
            return Err(ResponseError::Tag {
                found: found_tag,
                expected: ST_NO_SESSIONS,
            });
        }
        r.end()?;
        return Err(ResponseError::Failed {
            code: ResponseCode(code),
        });
    }
    if found_tag != tag {
        return Err(ResponseError::Tag {
            found: found_tag,
            expected: tag,
        });
    }
    Ok(r)
}

/// Parses `TPM2_PCR_Extend`'s response: no parameters, one password-session
/// acknowledgement (empty nonce, empty hmac).
pub fn parse_pcr_extend(response: &[u8]) -> Result<(), ResponseError> {
    let mut r = parse_header(response, ST_SESSIONS)?;
    r.expect("parameterSize", 0, 4)?;
    r.expect("nonceTPM size", 0, 2)?;
    let _attributes = r.u8("sessionAttributes")?;
    r.expect("hmac size", 0, 2)?;
    r.end()
}

/// Parses `TPM2_PCR_Read`'s response for one PCR of the SHA-256 bank: the selection out
/// must be exactly the one asked for (a TPM without the SHA-256 bank, or without the PCR,
/// answers an empty one) and the one digest 32 bytes.
pub fn parse_pcr_read(pcr: u32, response: &[u8]) -> Result<[u8; SHA256_LEN], ResponseError> {
    let mut r = parse_header(response, ST_NO_SESSIONS)?;
    let _update_counter = r.u32("pcrUpdateCounter")?;
    r.expect("pcrSelectionOut count", 1, 4)?;
    r.expect("pcrSelectionOut hash", u64::from(ALG_SHA256), 2)?;
    r.expect("pcrSelectionOut sizeofSelect", u64::from(SELECT_LEN), 1)?;
    let bits = r.array::<{ SELECT_LEN as usize }>("pcrSelectionOut pcrSelect")?;
    let want = select(pcr);
    if bits != want {
        return Err(ResponseError::Field {
            field: "pcrSelectionOut pcrSelect",
            found: u64::from(u32::from_be_bytes([0, bits[0], bits[1], bits[2]])),
            expected: u64::from(u32::from_be_bytes([0, want[0], want[1], want[2]])),
        });
    }
    r.expect("pcrValues count", 1, 4)?;
    r.expect("pcrValues digest size", SHA256_LEN as u64, 2)?;
    let value = r.array::<SHA256_LEN>("pcrValues digest")?;
    r.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests;
