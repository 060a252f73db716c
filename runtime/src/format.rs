//! The trace file format, shared by the writer (the runtime in the traced process) and the
//! reader (`padtrim replay` on the host).
//!
//! Layout (all integers little-endian):
//! ```text
//! header:  magic "PADTRACE" | version u32 | header_size u32 | mode u32 | flags u32
//!          | load_bias u64 | tick0 u64 | ns0 u64 | pid u32 | path_len u32 | path bytes
//!          | zero padding to a multiple of 8 (header_size counts all of it)
//! records: RECORD_SIZE bytes each, appended in blocks (one block per flushed thread buffer):
//!          time u64 | addr u64 | tid u32 | depth u16 | kind u8 | reserved u8
//! ```
//! `time` is in clock ticks (`rdtime`); `Clock` records pair ticks with CLOCK_MONOTONIC
//! nanoseconds so the reader can convert. Addresses are link-time (runtime minus load bias).
//! A crash can leave a partial record at the end; readers ignore it.
//!
//! `padtrim record` appends `Identity` records after the program has run: what identifies
//! the traced program (build-id, file size, a hash of its code), so `padtrim replay` can
//! refuse symbols from another program. The runtime never writes them, and readers skip
//! record kinds they do not know, so traces with and without them read the same way.
//!
//! Modules (the runtime preloaded into a program, see `rv::preload`): a function address is
//! tagged with the id of the module it belongs to in its top 16 bits (`tag`, `untag`); id 0
//! is the executable named in the header, so traces of a linked-in runtime, whose addresses
//! are all untagged, read the same way. Each traced module is described by `Module` records
//! (its path, load bias, build-id, what patching did, when it was unloaded), and a forked
//! child announces itself with a `Fork` record before its own records.

/// The 8 bytes every trace file starts with.
pub const MAGIC: [u8; 8] = *b"PADTRACE";
/// Version of the layout described in this module.
pub const VERSION: u32 = 1;
/// Size of the fixed part of the header, before the executable path.
pub const HEADER_FIXED_SIZE: usize = 56;
/// Size of one encoded record.
pub const RECORD_SIZE: usize = 24;
/// Longest executable path stored in a header.
pub const MAX_PATH: usize = 4096;

/// What the runtime records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing is patched, nothing recorded.
    Off,
    /// Function entries only.
    Entry,
    /// Entries and exits (return hooks).
    Graph,
}

impl Mode {
    /// The number stored in the header.
    pub fn to_u32(self) -> u32 {
        match self {
            Mode::Off => 0,
            Mode::Entry => 1,
            Mode::Graph => 2,
        }
    }
    /// The word for it, as `PADTRIM_TRACE` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Entry => "entry",
            Mode::Graph => "graph",
        }
    }
    /// Inverse of `to_u32`.
    pub fn from_u32(v: u32) -> Option<Mode> {
        match v {
            0 => Some(Mode::Off),
            1 => Some(Mode::Entry),
            2 => Some(Mode::Graph),
            _ => None,
        }
    }
}

/// Kind of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A traced function was entered; `addr` is its entry (link-time).
    Entry,
    /// A traced function returned through the return hook.
    Exit,
    /// A traced function's frame was found dead (longjmp, exception): its exit was inferred
    /// at `time`, which is when the runtime noticed, not when the function left.
    ExitUnwound,
    /// Clock calibration: `time` = ticks, `addr` = CLOCK_MONOTONIC nanoseconds, same instant.
    Clock,
    /// Records the runtime could not keep (no thread slot, shadow stack full): `addr` = count.
    Lost,
    /// Startup patching finished at `time`: `addr` = patched slots, skipped slots (not a
    /// 4-byte aligned `nop`, or out of reach) in the upper 32 bits of addr; `depth` = where
    /// the slot table was found (`TableSource::to_u16`).
    Patched,
    /// A fact identifying the traced program, appended by `padtrim record` (never by the
    /// runtime): `depth` = which fact (`IdentityField::to_u16`), `tid` = the length in bytes
    /// of its value, `time` then `addr` = up to 16 bytes of the value (little-endian). A
    /// longer value goes on in the next records of the same field, in file order.
    Identity,
    /// A fact about a traced module (written by the preloaded runtime): `tid` = the module
    /// id, `depth` = which fact (`ModuleField::to_u16`) in its low byte; see `ModuleField`
    /// for `time` and `addr`.
    Module,
    /// A forked child started tracing into the same file: `tid` = the child's pid, `addr` =
    /// the parent's pid, `time` = when. The child's records carry its own thread ids.
    Fork,
    /// Integer arguments of the call whose `Entry` record comes next on thread `tid`
    /// (`PADTRIM_ARGS`): up to two values, `time` then `addr`; the low byte of `depth` is the
    /// number of the first (1 for a0 ... 8 for a7), the high byte that of the second (0: none).
    /// A call with more arguments has several such records.
    Args,
    /// The return value (a0) of the call whose `Exit` record comes next on thread `tid`:
    /// `time` = the value, `addr` = the function, `depth` as in its `Exit`.
    Return,
}

/// Which fact a `Module` record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleField {
    /// The module was found and its slots patched: `addr` = its load bias, `time` = when.
    Loaded,
    /// What patching did: `addr` = patched slots, skipped ones in the upper 32 bits;
    /// `time` = when patching finished.
    Patched,
    /// The module's path: up to 16 bytes in `time` then `addr` (little-endian), the number
    /// of them in the high byte of `depth`; a longer path goes on in the next records.
    Path,
    /// The module's GNU build-id, in chunks like `Path`.
    BuildId,
    /// The module was unloaded (`dlclose`) at `time`; its id is not used again.
    Unloaded,
}

impl ModuleField {
    /// The number stored in the low byte of a `Module` record's `depth`.
    pub fn to_u16(self) -> u16 {
        match self {
            ModuleField::Loaded => 1,
            ModuleField::Patched => 2,
            ModuleField::Path => 3,
            ModuleField::BuildId => 4,
            ModuleField::Unloaded => 5,
        }
    }
    /// Inverse of `to_u16`.
    pub fn from_u16(v: u16) -> Option<ModuleField> {
        match v {
            1 => Some(ModuleField::Loaded),
            2 => Some(ModuleField::Patched),
            3 => Some(ModuleField::Path),
            4 => Some(ModuleField::BuildId),
            5 => Some(ModuleField::Unloaded),
            _ => None,
        }
    }
}

/// Bits of a recorded function address below the module id.
pub const MODULE_SHIFT: u32 = 48;
/// Largest module id (ids are 16 bits).
pub const MAX_MODULE_ID: u32 = 0xffff;

/// The recorded address of the function at link-time address `link` in module `id`, or
/// `None` when the address does not fit below the id (48 bits).
pub fn tag(id: u32, link: u64) -> Option<u64> {
    if id > MAX_MODULE_ID || link >> MODULE_SHIFT != 0 {
        return None;
    }
    Some(u64::from(id) << MODULE_SHIFT | link)
}

/// The module id and link-time address of a recorded function address.
pub fn untag(addr: u64) -> (u32, u64) {
    (
        (addr >> MODULE_SHIFT) as u32,
        addr & ((1u64 << MODULE_SHIFT) - 1),
    )
}

/// A `Module` record with a fact that fits one record (`Loaded`, `Patched`, `Unloaded`).
pub fn module_record(id: u32, field: ModuleField, time: u64, addr: u64) -> Record {
    Record {
        time,
        addr,
        tid: id,
        depth: field.to_u16(),
        kind: Kind::Module,
    }
}

/// The `index`-th `Module` record carrying `value` (a path or a build-id) for module `id`,
/// or `None` past the last one. An empty value has one record.
pub fn module_chunk(id: u32, field: ModuleField, value: &[u8], index: usize) -> Option<Record> {
    let start = index.checked_mul(16)?;
    if start >= value.len() && !(index == 0 && value.is_empty()) {
        return None;
    }
    let end = core::cmp::min(start + 16, value.len());
    let mut chunk = [0u8; 16];
    chunk[..end - start].copy_from_slice(&value[start..end]);
    Some(Record {
        time: u64_at(&chunk, 0)?,
        addr: u64_at(&chunk, 8)?,
        tid: id,
        depth: field.to_u16() | ((end - start) as u16) << 8,
        kind: Kind::Module,
    })
}

impl Record {
    /// For a `Module` record: the module id, the fact, and for `Path` and `BuildId` the
    /// bytes this record carries.
    pub fn module_fact(&self) -> Option<(u32, ModuleField, [u8; 16], usize)> {
        if self.kind != Kind::Module {
            return None;
        }
        let field = ModuleField::from_u16(self.depth & 0xff)?;
        let mut chunk = [0u8; 16];
        chunk[..8].copy_from_slice(&self.time.to_le_bytes());
        chunk[8..].copy_from_slice(&self.addr.to_le_bytes());
        let len = core::cmp::min((self.depth >> 8) as usize, 16);
        Some((self.tid, field, chunk, len))
    }
}

/// Which fact an `Identity` record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityField {
    /// The GNU build-id (the `NT_GNU_BUILD_ID` note's bytes).
    BuildId,
    /// The file's size in bytes (u64).
    FileSize,
    /// 64-bit FNV-1a over the program's code: for each allocated, executable section with
    /// bytes in the file, in section-header order, its address (u64), its size (u64) and
    /// its bytes. Equal hashes mean the same instructions at the same addresses, so the
    /// same function addresses (a stripped copy hashes like the original; a program
    /// rewritten by `padtrim rewrite` does not, though it keeps the build-id).
    CodeHash,
}

impl IdentityField {
    /// The number stored in an `Identity` record's `depth`.
    pub fn to_u16(self) -> u16 {
        match self {
            IdentityField::BuildId => 1,
            IdentityField::FileSize => 2,
            IdentityField::CodeHash => 3,
        }
    }
    /// Inverse of `to_u16`.
    pub fn from_u16(v: u16) -> Option<IdentityField> {
        match v {
            1 => Some(IdentityField::BuildId),
            2 => Some(IdentityField::FileSize),
            3 => Some(IdentityField::CodeHash),
            _ => None,
        }
    }
}

/// Longest value an `Identity` field may carry (a build-id is 8 to 20 bytes in practice).
pub const MAX_IDENTITY_VALUE: usize = 256;

/// The `index`-th `Identity` record carrying `value` for `field`, or `None` past the last
/// one (or when `value` is longer than `MAX_IDENTITY_VALUE`). An empty value has one record.
pub fn identity_record(field: IdentityField, value: &[u8], index: usize) -> Option<Record> {
    if value.len() > MAX_IDENTITY_VALUE {
        return None;
    }
    let start = index.checked_mul(16)?;
    if start >= value.len() && !(index == 0 && value.is_empty()) {
        return None;
    }
    let mut chunk = [0u8; 16];
    let end = core::cmp::min(start + 16, value.len());
    chunk[..end - start].copy_from_slice(&value[start..end]);
    Some(Record {
        time: u64_at(&chunk, 0)?,
        addr: u64_at(&chunk, 8)?,
        tid: value.len() as u32,
        depth: field.to_u16(),
        kind: Kind::Identity,
    })
}

impl Record {
    /// For an `Identity` record: its field, the value's total length, and its 16 bytes
    /// (of which the reader keeps what the length still needs).
    pub fn identity_chunk(&self) -> Option<(IdentityField, usize, [u8; 16])> {
        if self.kind != Kind::Identity {
            return None;
        }
        let mut chunk = [0u8; 16];
        chunk[..8].copy_from_slice(&self.time.to_le_bytes());
        chunk[8..].copy_from_slice(&self.addr.to_le_bytes());
        Some((
            IdentityField::from_u16(self.depth)?,
            self.tid as usize,
            chunk,
        ))
    }
}

/// Where the runtime found the slot table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSource {
    /// No table: the program has neither a filled descriptor nor pads.
    None,
    /// The descriptor `padtrim rewrite` filled (sorted `__mcount_loc`).
    Descriptor,
    /// The linker's `__start/__stop___patchable_function_entries` (program not rewritten).
    PatchableEntries,
    /// The `__mcount_loc` section of each module, found by the preloaded runtime in the
    /// modules' files.
    McountLoc,
}

impl TableSource {
    /// The number stored in a `Patched` record's `depth`.
    pub fn to_u16(self) -> u16 {
        match self {
            TableSource::None => 0,
            TableSource::Descriptor => 1,
            TableSource::PatchableEntries => 2,
            TableSource::McountLoc => 3,
        }
    }
    /// Inverse of `to_u16`.
    pub fn from_u16(v: u16) -> Option<TableSource> {
        match v {
            0 => Some(TableSource::None),
            1 => Some(TableSource::Descriptor),
            2 => Some(TableSource::PatchableEntries),
            3 => Some(TableSource::McountLoc),
            _ => None,
        }
    }
    /// Short name, as `PADTRIM_DEBUG` and `padtrim replay` print it.
    pub fn name(self) -> &'static str {
        match self {
            TableSource::None => "none",
            TableSource::Descriptor => "descriptor",
            TableSource::PatchableEntries => "__patchable_function_entries",
            TableSource::McountLoc => "__mcount_loc",
        }
    }
}

impl Kind {
    /// The byte stored in a record.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::Entry => 0,
            Kind::Exit => 1,
            Kind::ExitUnwound => 2,
            Kind::Clock => 3,
            Kind::Lost => 4,
            Kind::Patched => 5,
            Kind::Identity => 6,
            Kind::Module => 7,
            Kind::Fork => 8,
            Kind::Args => 9,
            Kind::Return => 10,
        }
    }
    /// Inverse of `to_u8`.
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            0 => Some(Kind::Entry),
            1 => Some(Kind::Exit),
            2 => Some(Kind::ExitUnwound),
            3 => Some(Kind::Clock),
            4 => Some(Kind::Lost),
            5 => Some(Kind::Patched),
            6 => Some(Kind::Identity),
            7 => Some(Kind::Module),
            8 => Some(Kind::Fork),
            9 => Some(Kind::Args),
            10 => Some(Kind::Return),
            _ => None,
        }
    }
}

/// One trace event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Clock ticks (or, for `Clock`, the tick side of the pair).
    pub time: u64,
    /// Link-time function address (or the kind-specific payload).
    pub addr: u64,
    /// Kernel thread id.
    pub tid: u32,
    /// Call depth of the function on its thread (0 = outermost traced frame).
    pub depth: u16,
    /// What happened.
    pub kind: Kind,
}

impl Record {
    /// Encode into the on-disk form.
    pub fn encode(&self) -> [u8; RECORD_SIZE] {
        let mut out = [0u8; RECORD_SIZE];
        out[0..8].copy_from_slice(&self.time.to_le_bytes());
        out[8..16].copy_from_slice(&self.addr.to_le_bytes());
        out[16..20].copy_from_slice(&self.tid.to_le_bytes());
        out[20..22].copy_from_slice(&self.depth.to_le_bytes());
        out[22] = self.kind.to_u8();
        out
    }

    /// Decode one record; `None` if the kind byte is unknown or the slice is short.
    pub fn decode(b: &[u8]) -> Option<Record> {
        if b.len() < RECORD_SIZE {
            return None;
        }
        Some(Record {
            time: u64_at(b, 0)?,
            addr: u64_at(b, 8)?,
            tid: u32_at(b, 16)?,
            depth: u16::from_le_bytes([b[20], b[21]]),
            kind: Kind::from_u8(b[22])?,
        })
    }
}

/// The fixed header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the runtime was asked to record.
    pub mode: Mode,
    /// Runtime address minus link-time address of the executable.
    pub load_bias: u64,
    /// Clock ticks when tracing started.
    pub tick0: u64,
    /// CLOCK_MONOTONIC nanoseconds at the same instant.
    pub ns0: u64,
    /// Process id of the traced program.
    pub pid: u32,
}

/// Why a trace file could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Shorter than a header.
    Truncated,
    /// Does not start with `MAGIC`.
    BadMagic,
    /// A version this reader does not know.
    UnsupportedVersion(u32),
    /// Header fields contradict each other.
    BadHeader,
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FormatError::Truncated => write!(f, "trace file is truncated (no complete header)"),
            FormatError::BadMagic => write!(f, "not a padtrim trace (bad magic)"),
            FormatError::UnsupportedVersion(v) => write!(f, "unsupported trace version {}", v),
            FormatError::BadHeader => write!(f, "corrupt trace header"),
        }
    }
}

/// Bytes needed for a header carrying a path of `path_len` bytes.
pub fn header_size(path_len: usize) -> usize {
    (HEADER_FIXED_SIZE + path_len + 7) & !7
}

/// Encode a header into `out`; returns the bytes written, or `None` if `out` is too small or
/// the path too long.
pub fn encode_header(h: &Header, path: &[u8], out: &mut [u8]) -> Option<usize> {
    if path.len() > MAX_PATH {
        return None;
    }
    let size = header_size(path.len());
    let out = out.get_mut(..size)?;
    for b in out.iter_mut() {
        *b = 0;
    }
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(size as u32).to_le_bytes());
    out[16..20].copy_from_slice(&h.mode.to_u32().to_le_bytes());
    // 20..24: flags, none defined yet.
    out[24..32].copy_from_slice(&h.load_bias.to_le_bytes());
    out[32..40].copy_from_slice(&h.tick0.to_le_bytes());
    out[40..48].copy_from_slice(&h.ns0.to_le_bytes());
    out[48..52].copy_from_slice(&h.pid.to_le_bytes());
    out[52..56].copy_from_slice(&(path.len() as u32).to_le_bytes());
    out[HEADER_FIXED_SIZE..HEADER_FIXED_SIZE + path.len()].copy_from_slice(path);
    Some(size)
}

/// A parsed trace file borrowing the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct TraceFile<'a> {
    /// Fixed header fields.
    pub header: Header,
    /// Path of the traced executable, as the process saw it.
    pub exe_path: &'a [u8],
    /// Bytes before the first record (the header with its path and padding).
    pub header_size: usize,
    /// The record area (whole records only).
    records: &'a [u8],
    /// Bytes of an incomplete record at the end (a crash while writing).
    pub trailing_bytes: usize,
}

impl<'a> TraceFile<'a> {
    /// Parse the header and locate the records.
    pub fn parse(bytes: &'a [u8]) -> Result<TraceFile<'a>, FormatError> {
        if bytes.len() >= 8 && bytes[0..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if bytes.len() < HEADER_FIXED_SIZE {
            return Err(FormatError::Truncated);
        }
        let version = u32_at(bytes, 8).ok_or(FormatError::Truncated)?;
        if version != VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let size = u32_at(bytes, 12).ok_or(FormatError::Truncated)? as usize;
        let mode = Mode::from_u32(u32_at(bytes, 16).ok_or(FormatError::Truncated)?)
            .ok_or(FormatError::BadHeader)?;
        let path_len = u32_at(bytes, 52).ok_or(FormatError::Truncated)? as usize;
        if path_len > MAX_PATH || size != header_size(path_len) {
            return Err(FormatError::BadHeader);
        }
        if bytes.len() < size {
            return Err(FormatError::Truncated);
        }
        let header = Header {
            mode,
            load_bias: u64_at(bytes, 24).ok_or(FormatError::Truncated)?,
            tick0: u64_at(bytes, 32).ok_or(FormatError::Truncated)?,
            ns0: u64_at(bytes, 40).ok_or(FormatError::Truncated)?,
            pid: u32_at(bytes, 48).ok_or(FormatError::Truncated)?,
        };
        let rest = &bytes[size..];
        let whole = rest.len() - rest.len() % RECORD_SIZE;
        Ok(TraceFile {
            header,
            exe_path: &bytes[HEADER_FIXED_SIZE..HEADER_FIXED_SIZE + path_len],
            header_size: size,
            records: &rest[..whole],
            trailing_bytes: rest.len() - whole,
        })
    }

    /// Number of whole records.
    pub fn record_count(&self) -> usize {
        self.records.len() / RECORD_SIZE
    }

    /// The records in file order; records with an unknown kind are skipped.
    pub fn records(&self) -> impl Iterator<Item = Record> + 'a {
        self.records
            .chunks_exact(RECORD_SIZE)
            .filter_map(Record::decode)
    }

    /// The tick-to-nanosecond conversion, fitted to the header and `Clock` records.
    pub fn clock(&self) -> Clock {
        let mut first = (self.header.tick0, self.header.ns0);
        let mut last = first;
        for r in self.records().filter(|r| r.kind == Kind::Clock) {
            if r.time < first.0 {
                first = (r.time, r.addr);
            }
            if r.time > last.0 {
                last = (r.time, r.addr);
            }
        }
        Clock::fit(first, last)
    }
}

/// A linear map from clock ticks to nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    /// Tick of the reference point.
    pub tick0: u64,
    /// Nanoseconds at the reference point.
    pub ns0: u64,
    /// Nanoseconds per tick.
    pub ns_per_tick: f64,
}

impl Clock {
    /// Fit through two (ticks, ns) points; with no usable span, one tick counts as one ns.
    pub fn fit(a: (u64, u64), b: (u64, u64)) -> Clock {
        let dt = b.0.wrapping_sub(a.0);
        let dn = b.1.wrapping_sub(a.1);
        let ns_per_tick = if b.0 > a.0 && b.1 > a.1 {
            dn as f64 / dt as f64
        } else {
            1.0
        };
        Clock {
            tick0: a.0,
            ns0: a.1,
            ns_per_tick,
        }
    }

    /// Nanoseconds since the reference point (negative before it).
    pub fn ns_since_start(&self, tick: u64) -> f64 {
        (tick as i128 - self.tick0 as i128) as f64 * self.ns_per_tick
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn header() -> Header {
        Header {
            mode: Mode::Graph,
            load_bias: 0x5555_0000,
            tick0: 1000,
            ns0: 50,
            pid: 42,
        }
    }

    #[test]
    fn header_and_records_round_trip() {
        let mut buf = [0u8; 256];
        let n = encode_header(&header(), b"/tmp/prog", &mut buf).unwrap();
        assert_eq!(n % 8, 0);
        let mut file: Vec<u8> = buf[..n].to_vec();
        let recs = [
            Record {
                time: 1100,
                addr: 0x1000,
                tid: 7,
                depth: 0,
                kind: Kind::Entry,
            },
            Record {
                time: 1300,
                addr: 0x1000,
                tid: 7,
                depth: 0,
                kind: Kind::Exit,
            },
            Record {
                time: 2000,
                addr: 1050,
                tid: 7,
                depth: 0,
                kind: Kind::Clock,
            },
        ];
        for r in &recs {
            file.extend_from_slice(&r.encode());
        }
        file.extend_from_slice(&[1, 2, 3]); // a torn write
        let t = TraceFile::parse(&file).unwrap();
        assert_eq!(t.header, header());
        assert_eq!(t.exe_path, b"/tmp/prog");
        assert_eq!(t.trailing_bytes, 3);
        assert_eq!(t.records().collect::<Vec<_>>(), recs.to_vec());
        let c = t.clock();
        assert!((c.ns_per_tick - 1.0).abs() < 1e-9);
        assert!((c.ns_since_start(1300) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn identity_values_split_into_records_and_join_again() {
        let build_id: Vec<u8> = (1..=20).collect();
        let mut recs = Vec::new();
        let mut i = 0;
        while let Some(r) = identity_record(IdentityField::BuildId, &build_id, i) {
            recs.push(r);
            i += 1;
        }
        assert_eq!(recs.len(), 2);
        let mut back = Vec::new();
        for r in &recs {
            let decoded = Record::decode(&r.encode()).unwrap();
            let (field, len, chunk) = decoded.identity_chunk().unwrap();
            assert_eq!((field, len), (IdentityField::BuildId, 20));
            let take = core::cmp::min(16, len - back.len());
            back.extend_from_slice(&chunk[..take]);
        }
        assert_eq!(back, build_id);
        let size = identity_record(IdentityField::FileSize, &7u64.to_le_bytes(), 0).unwrap();
        assert_eq!((size.addr, size.time, size.tid), (0, 7, 8));
        assert!(identity_record(IdentityField::FileSize, &7u64.to_le_bytes(), 1).is_none());
        assert!(identity_record(IdentityField::BuildId, &[], 0).is_some());
        assert!(identity_record(IdentityField::BuildId, &[0; 300], 0).is_none());
        assert!(Record::decode(&recs[0].encode())
            .unwrap()
            .identity_chunk()
            .is_some());
        let entry = Record {
            time: 0,
            addr: 0,
            tid: 0,
            depth: 0,
            kind: Kind::Entry,
        };
        assert!(entry.identity_chunk().is_none());
    }

    #[test]
    fn module_facts_round_trip_and_addresses_carry_the_module() {
        let path = b"/usr/lib/riscv64-linux-gnu/libfoo.so.1";
        let mut back = Vec::new();
        let mut i = 0;
        while let Some(r) = module_chunk(3, ModuleField::Path, path, i) {
            let (id, field, chunk, len) =
                Record::decode(&r.encode()).unwrap().module_fact().unwrap();
            assert_eq!((id, field), (3, ModuleField::Path));
            back.extend_from_slice(&chunk[..len]);
            i += 1;
        }
        assert_eq!(i, 3);
        assert_eq!(back, path.to_vec());
        let loaded = module_record(3, ModuleField::Loaded, 99, 0x4000_0000);
        let decoded = Record::decode(&loaded.encode()).unwrap();
        assert_eq!(
            decoded.module_fact().map(|f| (f.0, f.1)),
            Some((3, ModuleField::Loaded))
        );
        assert_eq!((decoded.addr, decoded.time), (0x4000_0000, 99));
        assert!(module_chunk(1, ModuleField::BuildId, &[], 0).is_some());
        assert!(module_chunk(1, ModuleField::BuildId, &[], 1).is_none());
        assert_eq!(tag(0, 0x10a0), Some(0x10a0));
        assert_eq!(untag(tag(7, 0x1234).unwrap()), (7, 0x1234));
        assert_eq!(tag(1, 1 << 48), None);
        assert_eq!(tag(0x1_0000, 0), None);
        assert_eq!(Kind::from_u8(Kind::Fork.to_u8()), Some(Kind::Fork));
        assert_eq!(Kind::from_u8(Kind::Args.to_u8()), Some(Kind::Args));
        assert_eq!(Kind::from_u8(Kind::Return.to_u8()), Some(Kind::Return));
    }

    #[test]
    fn clock_scales_ticks() {
        let c = Clock::fit((100, 0), (300, 1000));
        assert!((c.ns_since_start(200) - 500.0).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            TraceFile::parse(b"short").unwrap_err(),
            FormatError::Truncated
        );
        let mut buf = [0u8; 64];
        encode_header(&header(), b"", &mut buf).unwrap();
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(TraceFile::parse(&bad).unwrap_err(), FormatError::BadMagic);
        let mut bad = buf;
        bad[8] = 9;
        assert_eq!(
            TraceFile::parse(&bad).unwrap_err(),
            FormatError::UnsupportedVersion(9)
        );
        let mut bad = buf;
        bad[52] = 200; // path longer than the header says
        assert_eq!(TraceFile::parse(&bad).unwrap_err(), FormatError::BadHeader);
        assert!(Record::decode(&[0u8; 10]).is_none());
        let mut r = Record {
            time: 1,
            addr: 2,
            tid: 3,
            depth: 4,
            kind: Kind::Exit,
        }
        .encode();
        r[22] = 99;
        assert!(Record::decode(&r).is_none());
    }
}
