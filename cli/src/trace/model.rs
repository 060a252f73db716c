//! A decoded trace: per-thread events with symbol names and times in nanoseconds, and (for
//! graph traces) the calls as spans with durations.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use padtrim_runtime::elf::{containing, Elf, FuncSym};
use padtrim_runtime::format::{Kind, Mode, TableSource, TraceFile};

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

/// One call event on a thread.
#[derive(Clone, Debug)]
pub struct Event {
    /// Entry, exit, unwound.
    pub kind: EventKind,
    /// Index into `Trace::names`.
    pub func: usize,
    /// Depth recorded by the runtime.
    pub depth: u16,
    /// Nanoseconds since tracing started.
    pub ns: f64,
}

/// A call with its duration (graph traces).
#[derive(Clone, Debug)]
pub struct Span {
    /// Index into `Trace::names`.
    pub func: usize,
    /// Nesting level on its thread (0 = outermost).
    pub level: usize,
    /// Entry time, ns since start.
    pub start: f64,
    /// Exit time, ns since start (end of the trace if it never returned).
    pub end: f64,
    /// Time spent in traced callees.
    pub children: f64,
    /// How the call ended.
    pub end_kind: SpanEnd,
    /// Names from the outermost traced caller down to this function, `;`-separated.
    pub stack: String,
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

/// All events of one thread, in order.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Kernel thread id.
    pub tid: u32,
    /// Events in the order the thread produced them.
    pub events: Vec<Event>,
    /// Calls as spans, in entry order (graph traces only).
    pub spans: Vec<Span>,
}

/// A decoded, symbolized trace.
#[derive(Clone, Debug)]
pub struct Trace {
    /// What was recorded.
    pub mode: Mode,
    /// Executable path stored in the trace.
    pub exe: String,
    /// Process id of the traced program.
    pub pid: u32,
    /// Function names (symbol, or hex address when unknown).
    pub names: Vec<String>,
    /// Threads ordered by their first event.
    pub threads: Vec<Thread>,
    /// What startup patching did, if recorded.
    pub patched: Option<Startup>,
    /// Records the runtime had to drop.
    pub lost: u64,
    /// Bytes of an incomplete record at the end of the file.
    pub trailing_bytes: usize,
}

impl Trace {
    /// Read and decode `path`, taking symbols from `elf` (or the executable named in the
    /// trace). An error if the trace identifies its program and `elf` is another one,
    /// unless `force` (then a warning).
    pub fn load(path: &Path, elf: Option<&Path>, force: bool) -> anyhow::Result<Trace> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let file = match TraceFile::parse(&bytes) {
            Ok(f) => f,
            Err(e) => bail!("{}: {}", path.display(), e),
        };
        let exe = String::from_utf8_lossy(file.exe_path).into_owned();
        let elf_path = elf
            .map(Path::to_path_buf)
            .unwrap_or_else(|| exe.clone().into());
        let elf_bytes = std::fs::read(&elf_path)
            .with_context(|| format!("{}: cannot read the traced program", elf_path.display()))?;
        let recorded = Identity::from_records(file.records());
        if let Some(recorded) = &recorded {
            check_identity(path, &exe, elf, &elf_path, recorded, &elf_bytes, force)?;
        }
        let symbols = Symbols::new(&elf_bytes);
        if symbols.is_none() {
            eprintln!(
                "padtrim: {}: no symbol table; showing addresses",
                elf_path.display()
            );
        }
        let clock = file.clock();
        let mut names = Vec::new();
        let mut by_addr: HashMap<u64, usize> = HashMap::new();
        let mut threads: Vec<Thread> = Vec::new();
        let mut by_tid: HashMap<u32, usize> = HashMap::new();
        let mut patched = None;
        let mut lost = 0;
        for r in file.records() {
            let kind = match r.kind {
                Kind::Entry => EventKind::Entry,
                Kind::Exit => EventKind::Exit,
                Kind::ExitUnwound => EventKind::Unwound,
                Kind::Lost => {
                    lost += r.addr;
                    continue;
                }
                Kind::Patched => {
                    patched = Some(Startup {
                        patched: r.addr & 0xffff_ffff,
                        skipped: r.addr >> 32,
                        ns: clock.ns_since_start(r.time),
                        table: TableSource::from_u16(r.depth).map_or("unknown", TableSource::name),
                    });
                    continue;
                }
                Kind::Clock | Kind::Identity => continue,
            };
            let func = *by_addr.entry(r.addr).or_insert_with(|| {
                names.push(
                    symbols
                        .as_ref()
                        .and_then(|s| s.name(r.addr))
                        .unwrap_or_else(|| format!("{:#x}", r.addr)),
                );
                names.len() - 1
            });
            let t = *by_tid.entry(r.tid).or_insert_with(|| {
                threads.push(Thread {
                    tid: r.tid,
                    events: Vec::new(),
                    spans: Vec::new(),
                });
                threads.len() - 1
            });
            threads[t].events.push(Event {
                kind,
                func,
                depth: r.depth,
                ns: clock.ns_since_start(r.time).max(0.0),
            });
        }
        if recorded.is_none() {
            if let Some(s) = &symbols {
                warn_if_no_function_matches(path, &elf_path, s, &by_addr);
            }
        }
        // Only graph traces have exits to pair; an entry-only trace would leave every call
        // open, nested in all earlier ones (quadratic in time and memory).
        if file.header.mode == Mode::Graph {
            for t in &mut threads {
                t.spans = spans_of(&t.events, &names);
            }
        }
        threads.sort_by(|a, b| {
            let fa = a.events.first().map_or(0.0, |e| e.ns);
            let fb = b.events.first().map_or(0.0, |e| e.ns);
            fa.total_cmp(&fb).then(a.tid.cmp(&b.tid))
        });
        Ok(Trace {
            mode: file.header.mode,
            exe,
            pid: file.header.pid,
            names,
            threads,
            patched,
            lost,
            trailing_bytes: file.trailing_bytes,
        })
    }
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
/// `padtrim record`): warn when not one traced function starts at a function of `elf`.
fn warn_if_no_function_matches(
    trace: &Path,
    elf: &Path,
    symbols: &Symbols<'_>,
    addrs: &HashMap<u64, usize>,
) {
    if addrs.is_empty() || addrs.keys().any(|&a| symbols.starts_function(a)) {
        return;
    }
    let n = addrs.len();
    let functions = if n == 1 { "function" } else { "functions" };
    eprintln!(
        "padtrim: replay: warning: none of the {n} traced {functions} in {} starts at a \
         function symbol of {}: is it the traced program, with its symbols? (the trace does \
         not identify its program: it was not written through padtrim record)",
        trace.display(),
        elf.display()
    );
}

/// Pair entries with exits. Exits arrive in LIFO order from the runtime; an exit that does
/// not match the innermost open call closes the calls above it as unwound.
fn spans_of(events: &[Event], names: &[String]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for e in events {
        match e.kind {
            EventKind::Entry => {
                let (stack, recursive) = match open.last() {
                    Some(&p) => {
                        let rec = open.iter().any(|&i| spans[i].func == e.func);
                        (format!("{};{}", spans[p].stack, names[e.func]), rec)
                    }
                    None => (names[e.func].clone(), false),
                };
                open.push(spans.len());
                spans.push(Span {
                    func: e.func,
                    level: open.len() - 1,
                    start: e.ns,
                    end: e.ns,
                    children: 0.0,
                    end_kind: SpanEnd::Open,
                    stack,
                    recursive,
                });
            }
            EventKind::Exit | EventKind::Unwound => {
                let pos = match open.iter().rposition(|&i| spans[i].func == e.func) {
                    Some(p) => p,
                    None => continue, // exit of a call entered before tracing saw it
                };
                while open.len() > pos {
                    let i = open.pop().unwrap_or_default();
                    let is_target = open.len() == pos;
                    spans[i].end = e.ns.max(spans[i].start);
                    spans[i].end_kind = if is_target && e.kind == EventKind::Exit {
                        SpanEnd::Returned
                    } else {
                        SpanEnd::Unwound
                    };
                    let dur = spans[i].end - spans[i].start;
                    if let Some(&p) = open.last() {
                        spans[p].children += dur;
                    }
                }
            }
        }
    }
    let last = events.last().map_or(0.0, |e| e.ns);
    while let Some(i) = open.pop() {
        spans[i].end = last.max(spans[i].start);
        let dur = spans[i].end - spans[i].start;
        if let Some(&p) = open.last() {
            spans[p].children += dur;
        }
    }
    spans
}

/// The traced program's function symbols, sorted for lookup.
struct Symbols<'a> {
    elf: Elf<'a>,
    funcs: Vec<FuncSym>,
}

impl<'a> Symbols<'a> {
    fn new(bytes: &'a [u8]) -> Option<Symbols<'a>> {
        let elf = Elf::parse(bytes)?;
        let mut funcs = vec![FuncSym::default(); elf.symbol_count()];
        let n = elf.sorted_functions(&mut funcs);
        funcs.truncate(n);
        Some(Symbols { elf, funcs })
    }

    /// Does a function start exactly at `addr`?
    fn starts_function(&self, addr: u64) -> bool {
        containing(&self.funcs, addr).is_some_and(|f| f.addr == addr)
    }

    fn name(&self, addr: u64) -> Option<String> {
        let f = containing(&self.funcs, addr)?;
        let name = String::from_utf8_lossy(self.elf.name(f.index)).into_owned();
        Some(if f.addr == addr {
            name
        } else {
            format!("{}+{:#x}", name, addr - f.addr)
        })
    }
}
