//! The byte-level HEX codec that generated bindings of HEX products call: a writer into a
//! caller-provided buffer (no allocation), a reader with typed errors, wire types, byte
//! order and exact decimal scaling. The layout itself (frame types, ids, field order) is
//! generated; see docs/hex-format.md.

use std::fmt;

/// Frame type byte of a property report (HeaderCtrl 18).
pub const FRAME_PROPERTY_REPORT: u8 = 0x01;
/// Frame type byte of an event report (HeaderCtrl 19).
pub const FRAME_EVENT_REPORT: u8 = 0x02;
/// Frame type byte of a service reply (HeaderCtrl 26).
pub const FRAME_SERVICE_REPLY: u8 = 0x03;
/// Frame type byte of a property set (HeaderCtrl 22).
pub const FRAME_PROPERTY_SET: u8 = 0x81;
/// Frame type byte of a service call (HeaderCtrl 24).
pub const FRAME_SERVICE_CALL: u8 = 0x82;
/// Frame type byte of a property ask (HeaderCtrl 25).
pub const FRAME_PROPERTY_ASK: u8 = 0x83;

/// Byte order of multi-byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Most significant byte first (the default).
    #[default]
    Big,
    /// Least significant byte first.
    Little,
}

/// A number's wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireType {
    /// Unsigned 8-bit.
    U8,
    /// Signed 8-bit.
    I8,
    /// Unsigned 16-bit.
    U16,
    /// Signed 16-bit.
    I16,
    /// Unsigned 32-bit.
    U32,
    /// Signed 32-bit.
    I32,
    /// Unsigned 64-bit.
    U64,
    /// Signed 64-bit.
    I64,
    /// IEEE 754 single.
    F32,
    /// IEEE 754 double.
    F64,
}

impl WireType {
    /// Its size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
        }
    }

    /// Its name in the model (`u16`, `f32`, ...): [`WireType::model_name`].
    pub const fn name(self) -> &'static str {
        self.model_name()
    }

    /// The smallest and largest raw integer it holds (`None` for floats).
    pub const fn int_range(self) -> Option<(i128, i128)> {
        match self {
            Self::U8 => Some((0, u8::MAX as i128)),
            Self::I8 => Some((i8::MIN as i128, i8::MAX as i128)),
            Self::U16 => Some((0, u16::MAX as i128)),
            Self::I16 => Some((i16::MIN as i128, i16::MAX as i128)),
            Self::U32 => Some((0, u32::MAX as i128)),
            Self::I32 => Some((i32::MIN as i128, i32::MAX as i128)),
            Self::U64 => Some((0, u64::MAX as i128)),
            Self::I64 => Some((i64::MIN as i128, i64::MAX as i128)),
            Self::F32 | Self::F64 => None,
        }
    }
}

spellings!(ByteOrder {
    Big => "big",
    Little => "little",
});

spellings!(WireType {
    U8 => "u8",
    I8 => "i8",
    U16 => "u16",
    I16 => "i16",
    U32 => "u32",
    I32 => "i32",
    U64 => "u64",
    I64 => "i64",
    F32 => "f32",
    F64 => "f64",
});

/// Why bytes could not be encoded or decoded. Decode errors name the byte offset and the
/// field, so a firmware engineer can find the byte in a capture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The input ends inside a value.
    #[error("truncated at byte {at}: {field} needs {needed} more byte(s)")]
    Truncated {
        /// Offset where the value starts.
        at: usize,
        /// What was being read.
        field: String,
        /// Bytes missing.
        needed: usize,
    },
    /// Bytes remain after a complete frame.
    #[error("{count} trailing byte(s) at byte {at} after a complete frame")]
    Trailing {
        /// Offset of the first extra byte.
        at: usize,
        /// How many.
        count: usize,
    },
    /// The frame type byte is not the expected one.
    #[error("frame type 0x{found:02x} at byte 0 is not {expected}")]
    FrameType {
        /// The byte found.
        found: u8,
        /// What was expected.
        expected: &'static str,
    },
    /// The input is empty.
    #[error("empty frame: no frame type byte")]
    Empty,
    /// An id that names no property, event or service.
    #[error("unknown {what} id {id} at byte {at}")]
    UnknownId {
        /// Offset of the id.
        at: usize,
        /// The id.
        id: u8,
        /// "property", "event" or "service".
        what: &'static str,
    },
    /// The same property appears twice in one frame.
    #[error("property {field} appears twice (byte {at})")]
    Duplicate {
        /// Offset of the second id.
        at: usize,
        /// The property.
        field: String,
    },
    /// A value does not fit its wire type, or a decoded value breaks the model's range.
    #[error("{field}: {value} is out of range ({why})")]
    OutOfRange {
        /// The field.
        field: String,
        /// The value.
        value: String,
        /// The violated bound.
        why: String,
    },
    /// A float on the wire that is NaN or infinite: no model value is (the parsing script
    /// refuses it with the same words).
    #[error("{field}: the {wire} at byte {at} is not a finite number")]
    NotFinite {
        /// The field.
        field: String,
        /// `f32` or `f64`.
        wire: &'static str,
        /// Offset of the float.
        at: usize,
    },
    /// Text that is not UTF-8.
    #[error("{field}: text at byte {at} is not valid UTF-8")]
    BadUtf8 {
        /// Offset of the text.
        at: usize,
        /// The field.
        field: String,
    },
    /// A bool byte other than 0 or 1.
    #[error("{field}: bool byte {value} at byte {at} is not 0 or 1")]
    BadBool {
        /// Offset.
        at: usize,
        /// The field.
        field: String,
        /// The byte.
        value: u8,
    },
    /// A service reply result byte other than 0 or 1.
    #[error("service result byte {value} at byte {at} is not 0 (ok) or 1 (failed)")]
    BadResult {
        /// Offset.
        at: usize,
        /// The byte.
        value: u8,
    },
    /// An enum key the model does not declare.
    #[error("{field}: unknown enum key {key} at byte {at}")]
    UnknownEnumKey {
        /// Offset.
        at: usize,
        /// The field.
        field: String,
        /// The key.
        key: i64,
    },
    /// Text or an array too long for its length prefix or fixed size.
    #[error("{field}: {len} {unit} do not fit (at most {max})")]
    TooLong {
        /// The field.
        field: String,
        /// Actual length.
        len: usize,
        /// Allowed length.
        max: usize,
        /// "bytes" or "items".
        unit: &'static str,
    },
    /// A positional report lacks a property (positional reports carry every property).
    #[error("positional report: property {field} is not set")]
    Incomplete {
        /// The missing property.
        field: String,
    },
    /// The output buffer is too small.
    #[error("output buffer of {capacity} bytes is too small")]
    BufferFull {
        /// The buffer's size.
        capacity: usize,
    },
    /// A property set writes a read-only property.
    #[error("property {field} (id at byte {at}) is read-only")]
    ReadOnly {
        /// Offset of the id.
        at: usize,
        /// The property.
        field: String,
    },
    /// An identifier that names nothing in the model (when encoding).
    #[error("{identifier}: unknown {what}")]
    UnknownIdentifier {
        /// The identifier.
        identifier: String,
        /// "property", "event" or "service".
        what: &'static str,
    },
    /// Not hex text (for full-HEX payloads).
    #[error("not hex text: {reason}")]
    NotHex {
        /// What is wrong.
        reason: String,
    },
}

/// Writes a frame into a caller-provided buffer, without allocating.
#[derive(Debug)]
pub struct HexWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    order: ByteOrder,
}

impl<'a> HexWriter<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8], order: ByteOrder) -> Self {
        Self { buf, len: 0, order }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), HexError> {
        let end = self.len + bytes.len();
        let Some(slot) = self.buf.get_mut(self.len..end) else {
            return Err(HexError::BufferFull {
                capacity: self.buf.len(),
            });
        };
        slot.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// One byte.
    ///
    /// # Errors
    /// [`HexError::BufferFull`].
    #[inline(always)]
    pub fn u8(&mut self, v: u8) -> Result<(), HexError> {
        self.put(&[v])
    }

    /// An integer as `wire`, checked against the wire type's range.
    ///
    /// # Errors
    /// [`HexError::OutOfRange`] naming `field`, or [`HexError::BufferFull`].
    #[inline(always)]
    pub fn int(&mut self, v: i64, wire: WireType, field: &str) -> Result<(), HexError> {
        let order = self.order;
        macro_rules! put {
            ($t:ty) => {
                match <$t>::try_from(v) {
                    Ok(x) => self.put(&endian(x.to_be_bytes(), order)),
                    Err(_) => Err(does_not_fit(v, wire, field)),
                }
            };
        }
        match wire {
            WireType::U8 => put!(u8),
            WireType::I8 => put!(i8),
            WireType::U16 => put!(u16),
            WireType::I16 => put!(i16),
            WireType::U32 => put!(u32),
            WireType::I32 => put!(i32),
            WireType::U64 => put!(u64),
            WireType::I64 => self.put(&endian(v.to_be_bytes(), order)),
            WireType::F32 => self.put(&endian((v as f32).to_be_bytes(), order)),
            WireType::F64 => self.put(&endian((v as f64).to_be_bytes(), order)),
        }
    }

    /// A number as `wire`: floats as they are, integers as `round((v - offset) / scale)`
    /// (half away from zero), checked against the wire type's range.
    ///
    /// # Errors
    /// [`HexError::OutOfRange`] naming `field`, or [`HexError::BufferFull`].
    #[inline(always)]
    pub fn number(
        &mut self,
        v: f64,
        wire: WireType,
        scale: f64,
        offset: f64,
        field: &str,
    ) -> Result<(), HexError> {
        let order = self.order;
        match wire {
            WireType::F32 => self.put(&endian((v as f32).to_be_bytes(), order)),
            WireType::F64 => self.put(&endian(v.to_be_bytes(), order)),
            _ => self.raw(((v - offset) / scale).round(), wire, v, field),
        }
    }

    /// An already scaled and rounded raw value as integer `wire`; `value` is what the error
    /// reports.
    #[inline(always)]
    fn raw(
        &mut self,
        raw: f64,
        wire: WireType,
        value: impl fmt::Display,
        field: &str,
    ) -> Result<(), HexError> {
        let order = self.order;
        macro_rules! put {
            ($t:ty) => {
                if raw >= <$t>::MIN as f64 && raw <= <$t>::MAX as f64 {
                    self.put(&endian((raw as $t).to_be_bytes(), order))
                } else {
                    Err(does_not_fit(value, wire, field))
                }
            };
        }
        match wire {
            WireType::U8 => put!(u8),
            WireType::I8 => put!(i8),
            WireType::U16 => put!(u16),
            WireType::I16 => put!(i16),
            WireType::U32 => put!(u32),
            WireType::I32 => put!(i32),
            // 2^63 and 2^64 are not exact in f64: stay below them.
            WireType::U64 if (0.0..1.844_674_407_370_955e19).contains(&raw) => {
                self.put(&endian((raw as u64).to_be_bytes(), order))
            }
            WireType::I64
                if (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&raw) =>
            {
                self.put(&endian((raw as i64).to_be_bytes(), order))
            }
            WireType::F32 => self.put(&endian((raw as f32).to_be_bytes(), order)),
            WireType::F64 => self.put(&endian(raw.to_be_bytes(), order)),
            _ => Err(does_not_fit(value, wire, field)),
        }
    }

    /// Text with a u8 length prefix.
    ///
    /// # Errors
    /// [`HexError::TooLong`] past 255 bytes, or [`HexError::BufferFull`].
    pub fn text(&mut self, s: &str, field: &str) -> Result<(), HexError> {
        let len = u8::try_from(s.len()).map_err(|_| HexError::TooLong {
            field: field.to_owned(),
            len: s.len(),
            max: 255,
            unit: "bytes",
        })?;
        self.u8(len)?;
        self.put(s.as_bytes())
    }

    /// Text in exactly `n` bytes, zero-padded.
    ///
    /// # Errors
    /// [`HexError::TooLong`] past `n` bytes, or [`HexError::BufferFull`].
    pub fn text_fixed(&mut self, s: &str, n: usize, field: &str) -> Result<(), HexError> {
        if s.len() > n {
            return Err(HexError::TooLong {
                field: field.to_owned(),
                len: s.len(),
                max: n,
                unit: "bytes",
            });
        }
        self.put(s.as_bytes())?;
        for _ in s.len()..n {
            self.u8(0)?;
        }
        Ok(())
    }

    /// An array's u8 item count.
    ///
    /// # Errors
    /// [`HexError::TooLong`] past 255 items, or [`HexError::BufferFull`].
    pub fn count(&mut self, n: usize, field: &str) -> Result<(), HexError> {
        let n = u8::try_from(n).map_err(|_| HexError::TooLong {
            field: field.to_owned(),
            len: n,
            max: 255,
            unit: "items",
        })?;
        self.u8(n)
    }
}

/// The error of a NaN or infinite float at byte `at`.
#[cold]
fn not_finite(field: &str, wire: &'static str, at: usize) -> HexError {
    HexError::NotFinite {
        field: field.to_owned(),
        wire,
        at,
    }
}

/// The error for a value outside its wire type (kept out of the hot path).
#[cold]
fn does_not_fit(v: impl fmt::Display, wire: WireType, field: &str) -> HexError {
    HexError::OutOfRange {
        field: field.to_owned(),
        value: v.to_string(),
        why: format!("does not fit {}", wire.name()),
    }
}

#[inline(always)]
fn endian<const N: usize>(mut be: [u8; N], order: ByteOrder) -> [u8; N] {
    if order == ByteOrder::Little {
        be.reverse();
    }
    be
}

/// Reads a frame, with errors that name the byte offset and the field.
#[derive(Debug)]
pub struct HexReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    order: ByteOrder,
}

impl<'a> HexReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8], order: ByteOrder) -> Self {
        Self {
            bytes,
            pos: 0,
            order,
        }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Whether every byte was read.
    #[inline(always)]
    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Reads the frame type byte and checks it.
    ///
    /// # Errors
    /// [`HexError::Empty`] or [`HexError::FrameType`].
    pub fn frame_type(&mut self, expected: u8, what: &'static str) -> Result<(), HexError> {
        let Some(&found) = self.bytes.first() else {
            return Err(HexError::Empty);
        };
        if found != expected {
            return Err(HexError::FrameType {
                found,
                expected: what,
            });
        }
        self.pos = 1;
        Ok(())
    }

    /// Fails if bytes remain.
    ///
    /// # Errors
    /// [`HexError::Trailing`].
    pub fn finish(&self) -> Result<(), HexError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(HexError::Trailing {
                at: self.pos,
                count: self.bytes.len() - self.pos,
            })
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], HexError> {
        let start = self.pos;
        match self.bytes.get(start..start + n) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(HexError::Truncated {
                at: start,
                field: field.to_owned(),
                needed: start + n - self.bytes.len(),
            }),
        }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], HexError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        if self.order == ByteOrder::Little {
            out.reverse();
        }
        Ok(out)
    }

    /// An `f32`, refused when NaN or infinite.
    ///
    /// # Errors
    /// [`HexError::Truncated`] or [`HexError::NotFinite`].
    #[inline(always)]
    pub fn f32(&mut self, field: &str) -> Result<f32, HexError> {
        let at = self.pos;
        let v = f32::from_be_bytes(self.array(field)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(not_finite(field, "f32", at))
        }
    }

    /// An `f64`, refused when NaN or infinite.
    ///
    /// # Errors
    /// [`HexError::Truncated`] or [`HexError::NotFinite`].
    #[inline(always)]
    pub fn f64(&mut self, field: &str) -> Result<f64, HexError> {
        let at = self.pos;
        let v = f64::from_be_bytes(self.array(field)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(not_finite(field, "f64", at))
        }
    }

    /// One byte.
    ///
    /// # Errors
    /// [`HexError::Truncated`].
    #[inline(always)]
    pub fn u8(&mut self, field: &str) -> Result<u8, HexError> {
        Ok(self.take(1, field)?[0])
    }

    /// An id byte, with its offset.
    ///
    /// # Errors
    /// [`HexError::Truncated`].
    #[inline(always)]
    pub fn id(&mut self, field: &str) -> Result<(usize, u8), HexError> {
        let at = self.pos;
        Ok((at, self.u8(field)?))
    }

    /// An integer of type `wire`.
    ///
    /// # Errors
    /// [`HexError::Truncated`].
    #[inline(always)]
    pub fn int(&mut self, wire: WireType, field: &str) -> Result<i64, HexError> {
        Ok(match wire {
            WireType::U8 => i64::from(self.u8(field)?),
            WireType::I8 => i64::from(i8::from_be_bytes(self.array::<1>(field)?)),
            WireType::U16 => i64::from(u16::from_be_bytes(self.array(field)?)),
            WireType::I16 => i64::from(i16::from_be_bytes(self.array(field)?)),
            WireType::U32 => i64::from(u32::from_be_bytes(self.array(field)?)),
            WireType::I32 => i64::from(i32::from_be_bytes(self.array(field)?)),
            WireType::U64 => {
                let at = self.pos;
                let v = u64::from_be_bytes(self.array(field)?);
                i64::try_from(v).map_err(|_| HexError::OutOfRange {
                    field: field.to_owned(),
                    value: v.to_string(),
                    why: format!("at byte {at}, above the largest supported 2^63-1"),
                })?
            }
            WireType::I64 => i64::from_be_bytes(self.array(field)?),
            WireType::F32 => self.f32(field)? as i64,
            WireType::F64 => self.f64(field)? as i64,
        })
    }

    /// A number of type `wire`: floats as they are (an `f32` widened through its shortest
    /// decimal), integers as `raw * scale + offset` rounded to the decimals of `scale` and
    /// `offset`, so raw 215 with scale 0.1 is exactly 21.5.
    ///
    /// # Errors
    /// [`HexError::Truncated`].
    #[inline(always)]
    pub fn number(
        &mut self,
        wire: WireType,
        scale: f64,
        offset: f64,
        decimals: u32,
        field: &str,
    ) -> Result<f64, HexError> {
        match wire {
            WireType::F32 => Ok(super::value::f32_to_f64(self.f32(field)?)),
            WireType::F64 => self.f64(field),
            _ => {
                let raw = self.int(wire, field)?;
                Ok(unscale(raw, scale, offset, decimals))
            }
        }
    }

    /// A bool byte (0 or 1).
    ///
    /// # Errors
    /// [`HexError::Truncated`] or [`HexError::BadBool`].
    #[inline(always)]
    pub fn bool(&mut self, field: &str) -> Result<bool, HexError> {
        let at = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(HexError::BadBool {
                at,
                field: field.to_owned(),
                value,
            }),
        }
    }

    /// Text with a u8 length prefix.
    ///
    /// # Errors
    /// [`HexError::Truncated`] or [`HexError::BadUtf8`].
    pub fn text(&mut self, field: &str) -> Result<String, HexError> {
        let n = usize::from(self.u8(field)?);
        let at = self.pos;
        let bytes = self.take(n, field)?;
        utf8(bytes, at, field)
    }

    /// Text in exactly `n` bytes; trailing zero bytes are padding.
    ///
    /// # Errors
    /// [`HexError::Truncated`] or [`HexError::BadUtf8`].
    pub fn text_fixed(&mut self, n: usize, field: &str) -> Result<String, HexError> {
        let at = self.pos;
        let bytes = self.take(n, field)?;
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        utf8(&bytes[..end], at, field)
    }

    /// An enum key of type `wire`, with its offset.
    ///
    /// # Errors
    /// [`HexError::Truncated`].
    #[inline(always)]
    pub fn key(&mut self, wire: WireType, field: &str) -> Result<(usize, i64), HexError> {
        let at = self.pos;
        Ok((at, self.int(wire, field)?))
    }
}

fn utf8(bytes: &[u8], at: usize, field: &str) -> Result<String, HexError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| HexError::BadUtf8 {
            at,
            field: field.to_owned(),
        })
}

/// `raw * scale + offset`, rounded to `decimals` places, so that raw 215 with scale 0.1 is
/// exactly 21.5 (never 21.500000000000004).
///
/// The result is `n / 10^decimals` with `n = round((raw * scale + offset) * 10^decimals)`: one
/// correctly rounded division, which is the same double as parsing the decimal text of the
/// value (and the same as the parsing script's `parseFloat(v.toFixed(decimals))`), without
/// formatting anything.
#[inline(always)]
pub fn unscale(raw: i64, scale: f64, offset: f64, decimals: u32) -> f64 {
    let v = raw as f64 * scale + offset;
    if scale == 1.0 && offset == 0.0 {
        return v;
    }
    let p = 10f64.powi(decimals.min(22) as i32);
    let n = (v * p).round();
    if n.abs() >= 9_007_199_254_740_992.0 {
        return v;
    }
    n / p
}

/// `round((v - offset) / scale)` for an `f32` value, rounding (half away from zero) as if
/// the value were its shortest decimal (what JSON carries and the parsing script computes
/// with). Exact and cheap: the f32 value is widened directly, and only when the decimal
/// could round differently (within half an f32 ulp of a .5 boundary) is the decimal formed.
#[inline(always)]
pub fn scale_f32(v: f32, scale: f64, offset: f64) -> f64 {
    let wide = f64::from(v);
    let x = (wide - offset) / scale;
    let r = x.round();
    // The decimal lies within half an f32 ulp of v (at most |v| * 2^-24, or 2^-150 for
    // subnormals); it rounds the same way unless that reaches the .5 boundary next to x.
    let half_ulp = (wide.abs() * 5.960_464_477_539_063e-8).max(7.1e-46);
    if 0.5 - (x - r).abs() > 2.0 * half_ulp / scale {
        r
    } else {
        ((super::value::f32_to_f64(v) - offset) / scale).round()
    }
}
/// Lowercase hex text of bytes (full-HEX payloads).
pub fn to_hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Bytes of hex text, either case (full-HEX payloads, HEX frame payloads).
///
/// # Errors
/// [`HexError::NotHex`].
pub fn from_hex(text: &str) -> Result<Vec<u8>, HexError> {
    ::hex::decode(text.trim()).map_err(|e| HexError::NotHex {
        reason: e.to_string(),
    })
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::model::Spelled::spelling(*self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_displays_its_model_spelling() {
        for (order, spelling) in <ByteOrder as crate::model::Spelled>::SPELLINGS {
            assert_eq!(order.to_string(), *spelling);
        }
        assert_eq!(ByteOrder::Little.to_string(), "little");
    }

    #[test]
    fn nan_and_infinite_floats_on_the_wire_are_refused_naming_the_byte() {
        // Found by the hex_meter fuzz target: an event's f32 `limit` of ff ff ff ff (a NaN)
        // passed the model's range check, since NaN compares false with every bound.
        for (bytes, wire) in [
            (&[0xff, 0xff, 0xff, 0xff][..], WireType::F32),
            (&[0x7f, 0x80, 0x00, 0x00][..], WireType::F32),
            (&[0xff, 0xf0, 0, 0, 0, 0, 0, 0][..], WireType::F64),
        ] {
            let mut r = HexReader::new(bytes, ByteOrder::Big);
            let e = r.number(wire, 1.0, 0.0, 0, "limit").unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "limit: the {} at byte 0 is not a finite number",
                    wire.name()
                )
            );
            let mut r = HexReader::new(bytes, ByteOrder::Big);
            assert!(r.int(wire, "limit").is_err(), "an int on a float wire");
        }
        let spec = HexSpec::DEFAULT;
        let mut r = HexReader::new(&[0xff, 0xff, 0xff, 0xff], ByteOrder::Big);
        assert!(<f32 as HexValue>::read_hex(&mut r, &spec, "limit").is_err());
        let mut r = HexReader::new(&[0x41, 0xa8, 0, 0], ByteOrder::Big);
        assert_eq!(
            <f32 as HexValue>::read_hex(&mut r, &spec, "limit").unwrap(),
            21.0
        );
    }

    #[test]
    fn scaling_is_exact_to_the_decimals() {
        assert_eq!(unscale(215, 0.1, 0.0, 1), 21.5);
        assert_eq!(unscale(215, 0.1, 0.0, 1).to_string(), "21.5");
        assert_eq!(unscale(-401, 0.1, -40.0, 1), -80.1);
        let mut buf = [0u8; 8];
        let mut w = HexWriter::new(&mut buf, ByteOrder::Big);
        w.number(21.5, WireType::I16, 0.1, 0.0, "t").unwrap();
        assert_eq!(w.written(), [0x00, 0xd7]);
        let mut r = HexReader::new(&buf[..2], ByteOrder::Big);
        assert_eq!(r.number(WireType::I16, 0.1, 0.0, 1, "t").unwrap(), 21.5);
    }

    #[test]
    fn fast_scaling_equals_the_decimal_definition() {
        // scale_f32 must round exactly as the shortest decimal would; unscale must equal
        // parsing the formatted decimal.
        let mut x: u32 = 0x1234_5678;
        for i in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let (scale, offset, decimals) = [
                (0.1, 0.0, 1),
                (0.01, 40.0, 2),
                (0.001, 0.0, 3),
                (0.5, -30.0, 1),
                (0.25, 0.0, 2),
            ][(i % 5) as usize];
            // Values on and off the grid, including exact .5 boundaries.
            let v = if i % 3 == 0 {
                (((x % 200_000) as f64 - 100_000.0) * scale / 2.0 + offset) as f32
            } else {
                f32::from_bits(x % 0x4b00_0000)
            };
            let decimal = ((super::super::value::f32_to_f64(v) - offset) / scale).round();
            assert_eq!(scale_f32(v, scale, offset), decimal, "{v} / {scale}");
            let raw = i64::from(x % 2_000_000) - 1_000_000;
            let text: f64 = format!("{:.*}", decimals as usize, raw as f64 * scale + offset)
                .parse()
                .unwrap();
            assert_eq!(
                unscale(raw, scale, offset, decimals),
                text,
                "{raw} * {scale} + {offset}"
            );
        }
    }

    #[test]
    fn byte_order_and_ranges() {
        let mut buf = [0u8; 4];
        let mut w = HexWriter::new(&mut buf, ByteOrder::Little);
        w.int(0x1234, WireType::U16, "x").unwrap();
        assert_eq!(w.written(), [0x34, 0x12]);
        assert_eq!(
            w.int(300, WireType::U8, "x").unwrap_err().to_string(),
            "x: 300 is out of range (does not fit u8)"
        );
        w.int(1, WireType::U16, "x").unwrap();
        assert!(matches!(
            w.int(1, WireType::U16, "x"),
            Err(HexError::BufferFull { capacity: 4 })
        ));
        let mut r = HexReader::new(&[0x01, 0x02], ByteOrder::Big);
        assert_eq!(
            r.int(WireType::U32, "v").unwrap_err().to_string(),
            "truncated at byte 0: v needs 2 more byte(s)"
        );
    }
}

/// How one value travels in a HEX frame: its wire type (`None`: the type's default), the
/// scaling of numbers, and for text a fixed size instead of a length prefix. For arrays it
/// describes the items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HexSpec {
    /// The wire type; `None` for the default of the value's type.
    pub wire: Option<WireType>,
    /// Scale: `raw = round((value - offset) / scale)`.
    pub scale: f64,
    /// Offset, see `scale`.
    pub offset: f64,
    /// Decimal places of `scale` and `offset`: decoded values are exact to these.
    pub decimals: u32,
    /// Text in exactly this many bytes (zero-padded) instead of a u8 length prefix.
    pub fixed: Option<usize>,
}

impl HexSpec {
    /// Defaults everywhere: the type's own wire type, no scaling, prefixed text.
    pub const DEFAULT: HexSpec = HexSpec {
        wire: None,
        scale: 1.0,
        offset: 0.0,
        decimals: 0,
        fixed: None,
    };

    fn scaled(&self) -> bool {
        self.scale != 1.0 || self.offset != 0.0
    }
}

/// A value type's HEX encoding. Implemented here for the scalar types and `Vec<T>`, and by
/// generated or derived enums (their key) and structs (their fields in order).
pub trait HexValue: Sized {
    /// Writes the value as `spec` says.
    ///
    /// # Errors
    /// A value that does not fit its wire type, or a full buffer.
    fn write_hex(&self, w: &mut HexWriter<'_>, spec: &HexSpec, field: &str)
    -> Result<(), HexError>;

    /// Reads a value as `spec` says.
    ///
    /// # Errors
    /// Truncated input, bad UTF-8, an unknown enum key, ...
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError>;
}

impl HexValue for i32 {
    #[inline(always)]
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        let wire = spec.wire.unwrap_or(WireType::I32);
        if spec.scaled() {
            w.number(f64::from(*self), wire, spec.scale, spec.offset, field)
        } else {
            w.int(i64::from(*self), wire, field)
        }
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        let wire = spec.wire.unwrap_or(WireType::I32);
        let at = r.pos();
        if !spec.scaled() {
            let v = r.int(wire, field)?;
            return i32::try_from(v).map_err(|_| HexError::OutOfRange {
                field: field.to_owned(),
                value: v.to_string(),
                why: format!("at byte {at}, not a 32-bit integer"),
            });
        }
        let v = if spec.scaled() {
            r.number(wire, spec.scale, spec.offset, spec.decimals, field)?
        } else {
            r.int(wire, field)? as f64
        };
        if v.fract() != 0.0 || v < f64::from(i32::MIN) || v > f64::from(i32::MAX) {
            return Err(HexError::OutOfRange {
                field: field.to_owned(),
                value: super::spec::number_text(v),
                why: format!("at byte {at}, not a 32-bit integer"),
            });
        }
        Ok(v as i32)
    }
}

impl HexValue for f32 {
    #[inline(always)]
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        match spec.wire.unwrap_or(WireType::F32) {
            WireType::F32 => {
                let order = w.order;
                w.put(&endian(self.to_be_bytes(), order))
            }
            // An f32 on f64 travels as its shortest decimal, as JSON would carry it.
            WireType::F64 => w.number(
                super::value::f32_to_f64(*self),
                WireType::F64,
                1.0,
                0.0,
                field,
            ),
            wire => {
                let raw = scale_f32(*self, spec.scale, spec.offset);
                w.raw(raw, wire, *self, field)
            }
        }
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        match spec.wire.unwrap_or(WireType::F32) {
            WireType::F32 => r.f32(field),
            wire => Ok(r.number(wire, spec.scale, spec.offset, spec.decimals, field)? as f32),
        }
    }
}

impl HexValue for f64 {
    #[inline(always)]
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        let wire = spec.wire.unwrap_or(WireType::F64);
        w.number(*self, wire, spec.scale, spec.offset, field)
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        let wire = spec.wire.unwrap_or(WireType::F64);
        r.number(wire, spec.scale, spec.offset, spec.decimals, field)
    }
}

impl HexValue for bool {
    #[inline(always)]
    fn write_hex(&self, w: &mut HexWriter<'_>, _: &HexSpec, _: &str) -> Result<(), HexError> {
        w.u8(u8::from(*self))
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, _: &HexSpec, field: &str) -> Result<Self, HexError> {
        r.bool(field)
    }
}

impl HexValue for String {
    #[inline(always)]
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        match spec.fixed {
            Some(n) => w.text_fixed(self, n, field),
            None => w.text(self, field),
        }
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        match spec.fixed {
            Some(n) => r.text_fixed(n, field),
            None => r.text(field),
        }
    }
}

impl HexValue for super::Date {
    #[inline(always)]
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        w.int(self.millis(), spec.wire.unwrap_or(WireType::U64), field)
    }

    #[inline(always)]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        Ok(Self::from_millis(
            r.int(spec.wire.unwrap_or(WireType::U64), field)?,
        ))
    }
}

impl<T: HexValue> HexValue for Vec<T> {
    fn write_hex(
        &self,
        w: &mut HexWriter<'_>,
        spec: &HexSpec,
        field: &str,
    ) -> Result<(), HexError> {
        w.count(self.len(), field)?;
        self.iter()
            .try_for_each(|item| item.write_hex(w, spec, field))
    }

    #[inline]
    fn read_hex(r: &mut HexReader<'_>, spec: &HexSpec, field: &str) -> Result<Self, HexError> {
        let n = r.u8(field)?;
        (0..n).map(|_| T::read_hex(r, spec, field)).collect()
    }
}

/// Writes an enum's key as `spec.wire` (default u8): what generated enums do.
///
/// # Errors
/// A key that does not fit the wire type, or a full buffer.
#[inline(always)]
pub fn write_key(
    key: i64,
    w: &mut HexWriter<'_>,
    spec: &HexSpec,
    field: &str,
) -> Result<(), HexError> {
    w.int(key, spec.wire.unwrap_or(WireType::U8), field)
}

/// Reads an enum key as `spec.wire` (default u8) and maps it with `from_key`.
///
/// # Errors
/// Truncated input, or [`HexError::UnknownEnumKey`].
#[inline(always)]
pub fn read_key<T>(
    r: &mut HexReader<'_>,
    spec: &HexSpec,
    field: &str,
    from_key: impl FnOnce(i64) -> Option<T>,
) -> Result<T, HexError> {
    let (at, key) = r.key(spec.wire.unwrap_or(WireType::U8), field)?;
    from_key(key).ok_or_else(|| HexError::UnknownEnumKey {
        at,
        field: field.to_owned(),
        key,
    })
}

/// Reads a value and checks it against the model's constraints, as decoders do for every
/// field.
///
/// # Errors
/// The read error, or [`HexError::OutOfRange`] for a value the model does not allow.
#[inline(always)]
pub fn read_checked<T: HexValue + super::ThingValue>(
    r: &mut HexReader<'_>,
    hex: &HexSpec,
    spec: &super::Spec,
    field: &str,
) -> Result<T, HexError> {
    let at = r.pos();
    let v = T::read_hex(r, hex, field)?;
    v.check(spec).map_err(|e| HexError::OutOfRange {
        field: field.to_owned(),
        value: e.to_string(),
        why: format!("value at byte {at} breaks the model"),
    })?;
    Ok(v)
}

/// A HEX product's property codec (generated for models with a `hex` layout).
pub trait HexModel: super::ThingModel {
    /// The layout's byte order.
    const BYTE_ORDER: ByteOrder;

    /// Encodes a property report (frame type 0x01, HeaderCtrl 18) into `out`; returns its
    /// length. Positional layouts need every property set.
    ///
    /// # Errors
    /// A value that does not fit, a positional report with a property unset, a full buffer.
    fn encode_report(report: &Self::Report, out: &mut [u8]) -> Result<usize, HexError>;

    /// Decodes a property report (what the platform does).
    ///
    /// # Errors
    /// A malformed frame, with the offset and field.
    fn decode_report(bytes: &[u8]) -> Result<Self::Report, HexError>;

    /// Decodes a property set (frame type 0x81, HeaderCtrl 22).
    ///
    /// # Errors
    /// A malformed frame, an unknown or read-only property, a value the model forbids.
    fn decode_set_hex(bytes: &[u8]) -> Result<Self::Set, HexError>;

    /// Encodes a property set (what the platform does).
    ///
    /// # Errors
    /// A value that does not fit, or a full buffer.
    fn encode_set(set: &Self::Set, out: &mut [u8]) -> Result<usize, HexError>;

    /// Decodes a property ask (frame type 0x83, HeaderCtrl 25) into identifiers.
    ///
    /// # Errors
    /// A malformed frame or an unknown property id.
    fn decode_ask(bytes: &[u8]) -> Result<Vec<&'static str>, HexError>;

    /// Encodes a property ask for `identifiers` (what the platform does).
    ///
    /// # Errors
    /// An identifier that names no property, or a full buffer.
    fn encode_ask(identifiers: &[&str], out: &mut [u8]) -> Result<usize, HexError>;
}

/// A HEX product's event codec (frame type 0x02, HeaderCtrl 19).
pub trait HexEvent: super::ThingEvent {
    /// The event's id byte.
    const HEX_ID: u8;

    /// Encodes the event into `out`; returns its length.
    ///
    /// # Errors
    /// A value that does not fit, or a full buffer.
    fn encode_hex(&self, out: &mut [u8]) -> Result<usize, HexError>;

    /// Decodes the event (what the platform does).
    ///
    /// # Errors
    /// A malformed frame, another event's id, a value the model forbids.
    fn decode_hex(bytes: &[u8]) -> Result<Self, HexError>;
}

/// A HEX product's service codec: calls (frame type 0x82, HeaderCtrl 24) and replies
/// (0x03, HeaderCtrl 26).
pub trait HexServices: super::ThingServices {
    /// The byte order of the layout.
    const BYTE_ORDER: ByteOrder;

    /// Decodes a service call.
    ///
    /// # Errors
    /// A malformed frame, an unknown service id, an input the model forbids.
    fn decode_call_hex(bytes: &[u8]) -> Result<Self, HexError>;

    /// Encodes the call (what the platform does).
    ///
    /// # Errors
    /// A value that does not fit, or a full buffer.
    fn encode_call_hex(&self, out: &mut [u8]) -> Result<usize, HexError>;

    /// Decodes a service reply into the service's identifier and, when it succeeded, its
    /// outputs as a payload (what the platform does).
    ///
    /// # Errors
    /// A malformed frame.
    fn decode_reply_hex(bytes: &[u8]) -> Result<DecodedReply, HexError>;
}

/// A decoded service reply: the service's identifier, and its outputs as a payload when it
/// succeeded (`None` when the device reported failure).
pub type DecodedReply = (
    &'static str,
    Option<serde_json::Map<String, serde_json::Value>>,
);

/// A HEX service reply written by a generated `dispatch_hex`: its length in the buffer, and
/// the handler's failure when it failed (the reply then carries result 1 and no outputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexReply {
    /// Bytes written.
    pub len: usize,
    /// The handler's failure, for the ack's `Msg`.
    pub failure: Option<super::ServiceFailure>,
}
