//! A trace read as a stream. `Trace::load` makes one pass over the file and keeps only what
//! is bounded by the program (function names, one entry per thread) and a small index of
//! where each thread's records are; `Trace::events` then reads one thread's events from the
//! file again, and `Spans` pairs a graph trace's entries with exits in bounded memory. No
//! part of this holds the trace's events in memory.
//!
//! A trace written by a preloaded runtime also covers the program's shared libraries: their
//! functions' addresses carry a module id (`untag`), and `Module` records say where each
//! module's file was loaded from. Their names come from those files, read once at load.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use padtrim_runtime::elf::{containing, Elf, FuncSym};
use padtrim_runtime::format::{
    untag, Clock, Kind, Mode, ModuleField, Record, TableSource, TraceFile, HEADER_FIXED_SIZE,
    MAX_PATH, RECORD_SIZE,
};

use super::identity::Identity;

/// What happened to a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Entered.
    Entry,
    /// Returned.
    Exit,
    /// Left without returning (longjmp, exception); time is when the runtime noticed.
    Unwound,
}

/// What the runtime did at startup (its `Patched` record).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Startup {
    /// Slots turned into `jal t0`.
    pub patched: u64,
    /// Slots left alone (not a 4-byte aligned `nop`, or nothing in `jal` reach).
    pub skipped: u64,
    /// Nanoseconds from the runtime's start to the end of patching.
    pub ns: f64,
    /// Where the slot table was found (`descriptor`, `__patchable_function_entries`, ...).
    pub table: &'static str,
}

/// Integer arguments recorded with a call (`PADTRIM_ARGS`): bit `n` of `mask` says that
/// `vals[n]` (register a`n`, argument `n + 1`) was recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgVals {
    /// Which arguments.
    pub mask: u8,
    /// Their values.
    pub vals: [u64; 8],
}

impl ArgVals {
    /// (argument number from 1, value) of each recorded argument, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..8)
            .filter(|&i| self.mask & (1 << i) != 0)
            .map(|i| (i + 1, self.vals[i]))
    }

    /// `(5, 0x10)`: the values as replay shows them, small ones in decimal.
    pub fn list(&self) -> String {
        let mut s = String::new();
        for (k, (_, v)) in self.iter().enumerate() {
            if k > 0 {
                s.push_str(", ");
            }
            s.push_str(&show_value(v));
        }
        s
    }

    fn set(&mut self, n: u16, v: u64) {
        if (1..=8).contains(&n) {
            self.mask |= 1 << (n - 1);
            self.vals[n as usize - 1] = v;
        }
    }
}

/// An integer register's value as replay shows it: signed decimal when it is small in
/// magnitude (what an `int`, a count or an error code holds), hexadecimal otherwise (a
/// pointer).
pub fn show_value(v: u64) -> String {
    let i = v as i64;
    if (-0x10_0000..=0x10_0000).contains(&i) {
        i.to_string()
    } else {
        format!("{v:#x}")
    }
}

/// One call event on a thread.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Entry, exit, unwound.
    pub kind: EventKind,
    /// The arguments recorded at an entry.
    pub args: Option<ArgVals>,
    /// The return value recorded at an exit.
    pub ret: Option<u64>,
    /// Index into `Trace::names`.
    pub func: usize,
    /// Depth recorded by the runtime.
    pub depth: u16,
    /// Nanoseconds since tracing started.
    pub ns: f64,
}

/// A call with its duration (graph traces).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// Index into `Trace::names`.
    pub func: usize,
    /// The arguments recorded at its entry.
    pub args: Option<ArgVals>,
    /// The return value recorded at its exit.
    pub ret: Option<u64>,
    /// Nesting level on its thread (0 = outermost).
    pub level: usize,
    /// Entry time, ns since start.
    pub start: f64,
    /// Exit time, ns since start (the thread's last event if it never returned).
    pub end: f64,
    /// Time spent in traced callees.
    pub children: f64,
    /// How the call ended.
    pub end_kind: SpanEnd,
    /// True if the same function is further up the stack (recursion).
    pub recursive: bool,
}

/// How a span ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanEnd {
    /// Through the return hook.
    Returned,
    /// Inferred (longjmp / exception).
    Unwound,
    /// Still running when the trace ended.
    Open,
}

/// A hasher for the integer keys of the per-record lookups (addresses, thread ids): the
/// default SipHash would cost more than decoding the record.
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A map keyed by integers (or short integer sequences), hashed with `IntHasher`.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Runs of consecutive event records of one thread (the runtime flushes a thread's buffer
/// as one block), as (first record, records): the index that lets one thread be read back
/// without reading the others. More runs than this in all (a trace whose threads alternate
/// record by record) and no index is kept: each thread is then read by scanning the file.
const MAX_RUNS: usize = 1 << 20;

/// One thread of a trace: where its events are.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Kernel thread id.
    pub tid: u32,
    /// Nanoseconds of its first event.
    pub first_ns: f64,
    /// Its number of call events (entries, exits, unwinds).
    pub events: u64,
    /// For the first thread of a forked child (its tid is the child's pid), the parent's pid.
    pub forked_from: Option<u32>,
    first_tick: u64,
    runs: Vec<(u64, u64)>,
}

/// A trace file read once through: its header, names, threads and what the runtime said;
/// the events stay in the file (`events`).
#[derive(Debug)]
pub struct Trace {
    /// The trace file.
    pub path: PathBuf,
    /// The program the symbols came from.
    pub elf_path: PathBuf,
    /// What was recorded.
    pub mode: Mode,
    /// Executable path stored in the trace.
    pub exe: String,
    /// Process id of the traced program.
    pub pid: u32,
    /// Runtime address minus link-time address of the executable.
    pub load_bias: u64,
    /// Function names (symbol, or hex address when unknown; `file+offset` in a library
    /// whose file is gone).
    pub names: Vec<String>,
    /// Recorded address of each function in `names`: the link-time address, with the id of
    /// its module in the top bits (`untag`; 0, the program, leaves it as it is).
    pub addrs: Vec<u64>,
    /// The modules other than the program that functions in `names` belong to, by id.
    pub modules: Vec<Module>,
    /// Threads ordered by their first event.
    pub threads: Vec<Thread>,
    /// What startup patching did, if recorded.
    pub patched: Option<Startup>,
    /// Records the runtime had to drop.
    pub lost: u64,
    /// Bytes of an incomplete record at the end of the file.
    pub trailing_bytes: usize,
    /// Ticks to nanoseconds.
    pub clock: Clock,
    header_size: u64,
    records: u64,
    indexed: bool,
}

/// Records read from the file at a time.
const CHUNK_RECORDS: usize = 8192;

impl Trace {
    /// Read `path` once, taking symbols from `elf` (or the executable named in the trace).
    /// An error if the trace identifies its program and `elf` is another one, unless
    /// `force` (then a warning).
    pub fn load(path: &Path, elf: Option<&Path>, force: bool) -> anyhow::Result<Trace> {
        let mut file =
            File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("{}: cannot read", path.display()))?
            .len();
        let mut head = Vec::new();
        (&mut file)
            .take((HEADER_FIXED_SIZE + MAX_PATH + 8) as u64)
            .read_to_end(&mut head)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let (header, exe, header_size) = match TraceFile::parse(&head) {
            Ok(f) => (
                f.header,
                String::from_utf8_lossy(f.exe_path).into_owned(),
                f.header_size as u64,
            ),
            Err(e) => bail!("{}: {}", path.display(), e),
        };
        let body = len.saturating_sub(header_size);
        let records = body / RECORD_SIZE as u64;
        let trailing_bytes = (body % RECORD_SIZE as u64) as usize;
        let elf_path = elf
            .map(Path::to_path_buf)
            .unwrap_or_else(|| exe.clone().into());
        let elf_bytes = std::fs::read(&elf_path)
            .with_context(|| format!("{}: cannot read the traced program", elf_path.display()))?;
        let symbols = Symbols::new(&elf_bytes);

        let mut addrs = Vec::new();
        let mut by_addr: IntMap<u64, usize> = IntMap::default();
        let mut threads: Vec<Thread> = Vec::new();
        let mut by_tid: IntMap<u32, usize> = IntMap::default();
        let mut identity = Vec::new();
        let mut module_facts: IntMap<u32, Module> = IntMap::default();
        let mut forks: IntMap<u32, u32> = IntMap::default();
        let mut patched_record = None;
        let mut lost = 0u64;
        let mut first = (header.tick0, header.ns0);
        let mut last = first;
        let mut last_thread = usize::MAX;
        let mut run_count = 0usize;
        let mut indexed = true;

        let mut reader = Chunks::new(file, header_size, records, path)?;
        let mut index = 0u64;
        while let Some(chunk) = reader.next_chunk()? {
            for raw in chunk.chunks_exact(RECORD_SIZE) {
                let at = index;
                index += 1;
                let Some(r) = Record::decode(raw) else {
                    continue;
                };
                let call = matches!(r.kind, Kind::Entry | Kind::Exit | Kind::ExitUnwound);
                match r.kind {
                    Kind::Entry | Kind::Exit | Kind::ExitUnwound => {}
                    // Read with the thread's events (they belong to the next entry or exit).
                    Kind::Args | Kind::Return => {}
                    Kind::Lost => {
                        lost += r.addr;
                        continue;
                    }
                    Kind::Patched => {
                        patched_record = Some(r);
                        continue;
                    }
                    Kind::Clock => {
                        if r.time < first.0 {
                            first = (r.time, r.addr);
                        }
                        if r.time > last.0 {
                            last = (r.time, r.addr);
                        }
                        continue;
                    }
                    Kind::Identity => {
                        identity.push(r);
                        continue;
                    }
                    Kind::Module => {
                        if let Some((id, field, chunk, len)) = r.module_fact() {
                            let m = module_facts.entry(id).or_insert_with(|| Module {
                                id,
                                ..Module::default()
                            });
                            match field {
                                ModuleField::Path => m.path.extend_from_slice(&chunk[..len]),
                                ModuleField::BuildId => m.build_id.extend_from_slice(&chunk[..len]),
                                ModuleField::Loaded => m.load_bias = Some(r.addr),
                                ModuleField::Patched | ModuleField::Unloaded => {}
                            }
                        }
                        continue;
                    }
                    Kind::Fork => {
                        forks.insert(r.tid, r.addr as u32);
                        continue;
                    }
                }
                if call {
                    if let std::collections::hash_map::Entry::Vacant(v) = by_addr.entry(r.addr) {
                        v.insert(addrs.len());
                        addrs.push(r.addr);
                    }
                }
                let t = *by_tid.entry(r.tid).or_insert_with(|| {
                    threads.push(Thread {
                        tid: r.tid,
                        first_ns: 0.0,
                        events: 0,
                        forked_from: None,
                        first_tick: if call { r.time } else { u64::MAX },
                        runs: Vec::new(),
                    });
                    threads.len() - 1
                });
                let th = &mut threads[t];
                if call {
                    th.events += 1;
                    th.first_tick = th.first_tick.min(r.time);
                }
                if indexed {
                    match th.runs.last_mut() {
                        Some(run) if last_thread == t => run.1 = at + 1 - run.0,
                        _ => {
                            th.runs.push((at, 1));
                            run_count += 1;
                            if run_count > MAX_RUNS {
                                indexed = false;
                                for th in &mut threads {
                                    th.runs = Vec::new();
                                }
                            }
                        }
                    }
                }
                last_thread = t;
            }
        }
        let recorded = Identity::from_records(identity.into_iter());
        if let Some(recorded) = &recorded {
            check_identity(path, &exe, elf, &elf_path, recorded, &elf_bytes, force)?;
        }
        if symbols.is_none() {
            eprintln!(
                "padtrim: {}: no symbol table; showing addresses",
                elf_path.display()
            );
        }
        if recorded.is_none() {
            if let Some(s) = &symbols {
                warn_if_no_function_matches(path, &elf_path, s, &addrs);
            }
        }
        // Names last: a library's `Module` records may come after its first calls.
        let used: IntMap<u32, ()> = addrs.iter().map(|&a| (untag(a).0, ())).collect();
        let mut modules: Vec<Module> = module_facts
            .into_values()
            .filter(|m| m.id != 0 && used.contains_key(&m.id))
            .collect();
        modules.sort_by_key(|m| m.id);
        let names = name_functions(path, symbols.as_ref(), &mut modules, &addrs);
        let clock = Clock::fit(first, last);
        let patched = patched_record.map(|r| Startup {
            patched: r.addr & 0xffff_ffff,
            skipped: r.addr >> 32,
            ns: clock.ns_since_start(r.time),
            table: TableSource::from_u16(r.depth).map_or("unknown", TableSource::name),
        });
        for t in &mut threads {
            t.first_ns = clock.ns_since_start(t.first_tick).max(0.0);
            t.forked_from = forks.get(&t.tid).copied();
        }
        threads.sort_by(|a, b| a.first_ns.total_cmp(&b.first_ns).then(a.tid.cmp(&b.tid)));
        Ok(Trace {
            path: path.to_path_buf(),
            elf_path,
            mode: header.mode,
            exe,
            pid: header.pid,
            load_bias: header.load_bias,
            names,
            addrs,
            modules,
            threads,
            patched,
            lost,
            trailing_bytes,
            clock,
            header_size,
            records,
            indexed,
        })
    }

    /// The events of thread `t` (an index into `threads`), read from the file in order.
    pub fn events(&self, t: usize) -> anyhow::Result<Events<'_>> {
        let thread = &self.threads[t];
        let file = File::open(&self.path)
            .with_context(|| format!("{}: cannot read", self.path.display()))?;
        let ranges = if self.indexed {
            thread.runs.clone()
        } else {
            vec![(0, self.records)]
        };
        let by_addr: IntMap<u64, usize> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| (a, i))
            .collect();
        Ok(Events {
            trace: self,
            tid: thread.tid,
            file,
            ranges: ranges.into(),
            buf: Vec::new(),
            pos: 0,
            by_addr,
            last_ns: 0.0,
            pending_args: None,
            pending_ret: None,
        })
    }
}

/// Reads the record area in large chunks.
struct Chunks<'a> {
    file: File,
    left: u64,
    buf: Vec<u8>,
    path: &'a Path,
}

impl<'a> Chunks<'a> {
    fn new(mut file: File, header_size: u64, records: u64, path: &'a Path) -> anyhow::Result<Self> {
        file.seek(SeekFrom::Start(header_size))
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Ok(Chunks {
            file,
            left: records,
            buf: vec![0; CHUNK_RECORDS * RECORD_SIZE],
            path,
        })
    }

    /// The next whole records, or `None` at the end (a file that shrank ends early).
    fn next_chunk(&mut self) -> anyhow::Result<Option<&[u8]>> {
        if self.left == 0 {
            return Ok(None);
        }
        let n = self.left.min(CHUNK_RECORDS as u64) as usize;
        let got = read_full(&mut self.file, &mut self.buf[..n * RECORD_SIZE])
            .with_context(|| format!("{}: cannot read", self.path.display()))?;
        let whole = got / RECORD_SIZE;
        self.left = if whole < n { 0 } else { self.left - n as u64 };
        if whole == 0 {
            return Ok(None);
        }
        Ok(Some(&self.buf[..whole * RECORD_SIZE]))
    }
}

/// Read as much of `buf` as the file has; the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// One thread's events, read back from the trace file.
pub struct Events<'a> {
    trace: &'a Trace,
    tid: u32,
    file: File,
    ranges: VecDeque<(u64, u64)>,
    buf: Vec<u8>,
    pos: usize,
    by_addr: IntMap<u64, usize>,
    last_ns: f64,
    pending_args: Option<ArgVals>,
    pending_ret: Option<u64>,
}

impl Events<'_> {
    /// The next event, `None` after the last. An I/O error names the trace file.
    pub fn next_event(&mut self) -> anyhow::Result<Option<Event>> {
        loop {
            while self.pos + RECORD_SIZE <= self.buf.len() {
                let raw = &self.buf[self.pos..self.pos + RECORD_SIZE];
                self.pos += RECORD_SIZE;
                let Some(r) = Record::decode(raw) else {
                    continue;
                };
                if r.tid != self.tid {
                    continue;
                }
                let kind = match r.kind {
                    Kind::Entry => EventKind::Entry,
                    Kind::Exit => EventKind::Exit,
                    Kind::ExitUnwound => EventKind::Unwound,
                    Kind::Args => {
                        let a = self.pending_args.get_or_insert_with(ArgVals::default);
                        a.set(r.depth & 0xff, r.time);
                        a.set(r.depth >> 8, r.addr);
                        continue;
                    }
                    Kind::Return => {
                        self.pending_ret = Some(r.time);
                        continue;
                    }
                    _ => continue,
                };
                // Arguments come right before their entry, a return value right before its
                // exit (on the same thread).
                let (args, ret) = match kind {
                    EventKind::Entry => (self.pending_args.take(), None),
                    EventKind::Exit => (None, self.pending_ret.take()),
                    EventKind::Unwound => (None, None),
                };
                self.pending_args = None;
                self.pending_ret = None;
                let Some(&func) = self.by_addr.get(&r.addr) else {
                    continue; // the file changed since it was indexed
                };
                let ns = self.trace.clock.ns_since_start(r.time).max(0.0);
                self.last_ns = ns;
                return Ok(Some(Event {
                    kind,
                    args,
                    ret,
                    func,
                    depth: r.depth,
                    ns,
                }));
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// Nanoseconds of the last event returned (0 before the first).
    pub fn last_ns(&self) -> f64 {
        self.last_ns
    }

    fn refill(&mut self) -> anyhow::Result<bool> {
        let path = &self.trace.path;
        let Some(&(start, count)) = self.ranges.front() else {
            return Ok(false);
        };
        let n = count.min(CHUNK_RECORDS as u64);
        self.file
            .seek(SeekFrom::Start(
                self.trace.header_size + start * RECORD_SIZE as u64,
            ))
            .with_context(|| format!("{}: cannot read", path.display()))?;
        self.buf.resize(n as usize * RECORD_SIZE, 0);
        let got = read_full(&mut self.file, &mut self.buf)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        self.buf.truncate(got - got % RECORD_SIZE);
        self.pos = 0;
        if (got as u64) < n * RECORD_SIZE as u64 {
            self.ranges.clear(); // the file shrank: no more records
        } else if n == count {
            self.ranges.pop_front();
        } else if let Some(front) = self.ranges.front_mut() {
            *front = (start + n, count - n);
        }
        Ok(!self.buf.is_empty() || !self.ranges.is_empty())
    }
}

/// A span that has been entered and has not ended yet.
#[derive(Clone, Copy, Debug)]
struct OpenSpan {
    ordinal: u64,
    func: usize,
    args: Option<ArgVals>,
    start: f64,
    children: f64,
}

/// A span as it ends: its entry ordinal on the thread (0, 1, ... in entry order).
#[derive(Clone, Copy, Debug)]
pub struct Closed {
    /// Which entry of the thread it was (0 for the first).
    pub ordinal: u64,
    /// The span.
    pub span: Span,
}

/// Pairs entries with exits as the events come. Exits arrive in LIFO order from the
/// runtime; an exit that does not match the innermost open call closes the calls above it
/// as unwound, and an exit of a call entered before tracing saw it is ignored.
#[derive(Default)]
pub struct Pairing {
    open: Vec<OpenSpan>,
    next_ordinal: u64,
}

impl Pairing {
    /// An entry: its ordinal, nesting level and whether it is recursive.
    pub fn enter(&mut self, e: &Event) -> (u64, usize, bool) {
        let recursive = self.open.iter().any(|o| o.func == e.func);
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.open.push(OpenSpan {
            ordinal,
            func: e.func,
            args: e.args,
            start: e.ns,
            children: 0.0,
        });
        (ordinal, self.open.len() - 1, recursive)
    }

    /// An exit or unwind: hand each span it ends, innermost first, to `closed`.
    pub fn leave(&mut self, e: &Event, mut closed: impl FnMut(Closed)) {
        let Some(pos) = self.open.iter().rposition(|o| o.func == e.func) else {
            return;
        };
        while self.open.len() > pos {
            let Some(o) = self.open.pop() else { break };
            let is_target = self.open.len() == pos;
            let end = e.ns.max(o.start);
            let returned = is_target && e.kind == EventKind::Exit;
            let end_kind = if returned {
                SpanEnd::Returned
            } else {
                SpanEnd::Unwound
            };
            let ret = if returned { e.ret } else { None };
            self.finish(o, end, end_kind, ret, &mut closed);
        }
    }

    /// The end of the thread at `last` ns: every span still open ends there.
    pub fn close_all(&mut self, last: f64, mut closed: impl FnMut(Closed)) {
        while let Some(o) = self.open.pop() {
            let end = last.max(o.start);
            self.finish(o, end, SpanEnd::Open, None, &mut closed);
        }
    }

    /// Ordinal the next entry will get.
    pub fn next_ordinal(&self) -> u64 {
        self.next_ordinal
    }

    fn finish(
        &mut self,
        o: OpenSpan,
        end: f64,
        end_kind: SpanEnd,
        ret: Option<u64>,
        closed: &mut impl FnMut(Closed),
    ) {
        let dur = end - o.start;
        if let Some(p) = self.open.last_mut() {
            p.children += dur;
        }
        let recursive = self.open.iter().any(|p| p.func == o.func);
        let span = Span {
            func: o.func,
            args: o.args,
            ret,
            level: self.open.len(),
            start: o.start,
            end,
            children: o.children,
            end_kind,
            recursive,
        };
        closed(Closed {
            ordinal: o.ordinal,
            span,
        });
    }
}

/// Spans that take longer than this many later entries to end are found in a first pass
/// over the thread (`Spans::new`); the others wait at most this long in the queue.
const WINDOW: u64 = 1 << 16;

/// A graph thread's calls as spans, in entry order, each with its end, read in two passes
/// over the thread's events: the first notes the ends of the few long spans (those that
/// enclose more than `WINDOW` later calls, such as `main`), the second emits each span as
/// soon as its end is known, keeping at most `WINDOW` spans waiting.
pub struct Spans<'a> {
    events: Events<'a>,
    pairing: Pairing,
    long: IntMap<u64, Closed>,
    queue: VecDeque<Option<Span>>,
    /// Ordinal of the span at the front of `queue`.
    base: u64,
    done: bool,
}

impl<'a> Spans<'a> {
    /// The spans of thread `t`.
    pub fn new(trace: &'a Trace, t: usize) -> anyhow::Result<Spans<'a>> {
        let mut long: IntMap<u64, Closed> = IntMap::default();
        let mut events = trace.events(t)?;
        let mut pairing = Pairing::default();
        let mut note = |next: u64, c: Closed| {
            if next - c.ordinal > WINDOW {
                long.insert(c.ordinal, c);
            }
        };
        while let Some(e) = events.next_event()? {
            if e.kind == EventKind::Entry {
                pairing.enter(&e);
            } else {
                let next = pairing.next_ordinal();
                pairing.leave(&e, |c| note(next, c));
            }
        }
        let next = pairing.next_ordinal();
        pairing.close_all(events.last_ns(), |c| note(next, c));
        Ok(Spans {
            events: trace.events(t)?,
            pairing: Pairing::default(),
            long,
            queue: VecDeque::new(),
            base: 0,
            done: false,
        })
    }

    /// The next span in entry order.
    pub fn next_span(&mut self) -> anyhow::Result<Option<Span>> {
        loop {
            if let Some(Some(_)) = self.queue.front() {
                self.base += 1;
                return Ok(self.queue.pop_front().flatten());
            }
            if self.done {
                return Ok(None);
            }
            let (queue, base) = (&mut self.queue, self.base);
            let fill = |c: Closed| {
                if let Some(slot) = c
                    .ordinal
                    .checked_sub(base)
                    .and_then(|i| queue.get_mut(i as usize))
                {
                    if slot.is_none() {
                        *slot = Some(c.span);
                    }
                }
            };
            match self.events.next_event()? {
                Some(e) if e.kind == EventKind::Entry => {
                    let (ordinal, level, recursive) = self.pairing.enter(&e);
                    let known = self.long.remove(&ordinal).map(|c| Span {
                        level,
                        recursive,
                        ..c.span
                    });
                    self.queue.push_back(known);
                }
                Some(e) => self.pairing.leave(&e, fill),
                None => {
                    let last = self.events.last_ns();
                    self.pairing.close_all(last, fill);
                    self.done = true;
                }
            }
        }
    }
}

/// A module other than the program that a preloaded runtime traced, as its `Module` records
/// describe it.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Its id: the top bits of its functions' recorded addresses.
    pub id: u32,
    /// The path it was loaded from, as the loader had it.
    pub path: Vec<u8>,
    /// Its GNU build-id (empty if it has none).
    pub build_id: Vec<u8>,
    /// Runtime address minus link-time address, if recorded.
    pub load_bias: Option<u64>,
    /// Its file is still where it was loaded from, with the recorded build-id: its symbols
    /// name its functions (else they are shown as `file+offset`).
    pub found: bool,
}

impl Module {
    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        use std::os::unix::ffi::OsStrExt;
        Path::new(std::ffi::OsStr::from_bytes(&self.path))
    }

    /// The last component of its path.
    pub fn file_name(&self) -> String {
        let p = String::from_utf8_lossy(&self.path).into_owned();
        p.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// Its file, if it is still where it was loaded from and has the recorded build-id;
    /// else what is wrong with it.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        let path = self.path().display();
        let bytes = std::fs::read(self.path())
            .map_err(|e| format!("cannot read {path}, traced in it: {e}"))?;
        if Identity::of(&bytes).build_id.unwrap_or_default() != self.build_id {
            return Err(format!(
                "{path} is not the library traced (its build-id differs)"
            ));
        }
        Ok(bytes)
    }
}

/// The name of each function in `addrs`: the program's from `symbols`, a library's from its
/// file (with a warning naming the trace when the file is gone or another one, and setting
/// each module's `found`).
fn name_functions(
    trace: &Path,
    symbols: Option<&Symbols<'_>>,
    modules: &mut [Module],
    addrs: &[u64],
) -> Vec<String> {
    // A library loaded more than once is one file: read it once.
    let mut files: Vec<Option<Vec<u8>>> = Vec::new();
    let mut file_of: Vec<usize> = Vec::new();
    for i in 0..modules.len() {
        let m = &modules[i];
        let same = (0..i).find(|&j| modules[j].path == m.path && modules[j].build_id == m.build_id);
        let f = match same {
            Some(j) => file_of[j],
            None => {
                let bytes = match m.read() {
                    Ok(b) => Some(b),
                    Err(why) => {
                        eprintln!(
                            "padtrim: replay: warning: {}: {why}; its functions are shown as \
                             offsets",
                            trace.display()
                        );
                        None
                    }
                };
                files.push(bytes);
                files.len() - 1
            }
        };
        file_of.push(f);
        modules[i].found = files[f].is_some();
    }
    let index: IntMap<u32, usize> = modules.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    let tables: Vec<Option<Symbols<'_>>> = files
        .iter()
        .map(|f| f.as_deref().and_then(Symbols::new))
        .collect();
    addrs
        .iter()
        .map(|&a| {
            let (id, link) = untag(a);
            if id == 0 {
                return symbols
                    .and_then(|s| s.name(a))
                    .unwrap_or_else(|| format!("{a:#x}"));
            }
            let Some(&i) = index.get(&id) else {
                return format!("module {id}+{link:#x}");
            };
            tables[file_of[i]]
                .as_ref()
                .and_then(|s| s.name(link))
                .unwrap_or_else(|| format!("{}+{link:#x}", modules[i].file_name()))
        })
        .collect()
}

/// Refuse (or with `force`, warn about) a program that is not the one `recorded` describes.
fn check_identity(
    trace: &Path,
    exe: &str,
    given: Option<&Path>,
    elf_path: &Path,
    recorded: &Identity,
    elf_bytes: &[u8],
    force: bool,
) -> anyhow::Result<()> {
    let found = Identity::of(elf_bytes);
    if recorded.matches(&found) {
        return Ok(());
    }
    let rewritten = if recorded.same_build_different_code(&found) {
        " (the same build-id but different code: was one of them rewritten by padtrim rewrite?)"
    } else {
        ""
    };
    let (t, e) = (trace.display(), elf_path.display());
    let (tid, eid) = (recorded.describe(), found.describe());
    let (what, advice, facts) = match given {
        Some(_) => (
            format!("{e} is not the program traced in {t}{rewritten}"),
            "pass --force to replay with it anyway",
            format!("\n  traced: {exe}: {tid}\n  --elf:  {e}: {eid}"),
        ),
        None => (
            format!("{e} has changed since {t} was recorded{rewritten}"),
            "give the traced program with --elf, or pass --force to replay anyway",
            format!("\n  then: {tid}\n  now:  {eid}"),
        ),
    };
    if force {
        eprintln!(
            "padtrim: replay: warning: {what}; replaying anyway (--force), so function names \
             may be wrong{facts}"
        );
        return Ok(());
    }
    bail!("replay: {what}; {advice}{facts}")
}

/// For a trace that does not identify its program (written by a program run without
/// `padtrim record`): warn when not one traced function of the program (not of its
/// libraries) starts at a function of `elf`.
fn warn_if_no_function_matches(trace: &Path, elf: &Path, symbols: &Symbols<'_>, addrs: &[u64]) {
    let mut program = addrs
        .iter()
        .copied()
        .filter(|&a| untag(a).0 == 0)
        .peekable();
    if program.peek().is_none() || program.clone().any(|a| symbols.starts_function(a)) {
        return;
    }
    let n = program.count();
    let functions = if n == 1 { "function" } else { "functions" };
    eprintln!(
        "padtrim: replay: warning: none of the {n} traced {functions} in {} starts at a \
         function symbol of {}: is it the traced program, with its symbols? (the trace does \
         not identify its program: it was not written through padtrim record)",
        trace.display(),
        elf.display()
    );
}

/// The traced program's function symbols, sorted for lookup.
pub struct Symbols<'a> {
    elf: Elf<'a>,
    funcs: Vec<FuncSym>,
}

impl<'a> Symbols<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<Symbols<'a>> {
        let elf = Elf::parse(bytes)?;
        let mut funcs = vec![FuncSym::default(); elf.symbol_count()];
        let n = elf.sorted_functions(&mut funcs);
        funcs.truncate(n);
        Some(Symbols { elf, funcs })
    }

    /// The function symbols in address order (the first of several at one address is the
    /// one `name` gives), as (link-time address, size, name).
    pub fn functions(&self) -> impl Iterator<Item = (u64, u64, String)> + '_ {
        self.funcs.iter().map(|f| {
            (
                f.addr,
                f.size,
                String::from_utf8_lossy(self.elf.name(f.index)).into_owned(),
            )
        })
    }

    /// Does a function start exactly at `addr`?
    fn starts_function(&self, addr: u64) -> bool {
        containing(&self.funcs, addr).is_some_and(|f| f.addr == addr)
    }

    pub fn name(&self, addr: u64) -> Option<String> {
        let f = containing(&self.funcs, addr)?;
        let name = String::from_utf8_lossy(self.elf.name(f.index)).into_owned();
        Some(if f.addr == addr {
            name
        } else {
            format!("{}+{:#x}", name, addr - f.addr)
        })
    }
}
