//! Write a large, valid padtrim trace for a real program, to measure `padtrim replay`
//! (scripts/bench-replay). The calls are a random walk down a fixed call graph over the
//! program's function symbols (each function calls one of two others, up to 14 deep, so
//! there are a bounded number of distinct call stacks, as in a real program), on several
//! threads, in blocks of 2048 records per thread as the runtime flushes them. Every
//! address names a function of the program.
//!
//!   cargo run --release --example gen-trace -- PROGRAM OUT RECORDS [THREADS] [graph|entry]

use std::io::Write;

use padtrim_runtime::elf::{Elf, FuncSym};
use padtrim_runtime::format::{encode_header, Header, Kind, Mode, Record};

/// Records per block, as the runtime's per-thread buffer holds them.
const BLOCK: usize = 2048;
const MAX_DEPTH: usize = 14;
/// Functions the walk visits (the program's hot paths).
const HOT: u64 = 64;
/// Nanoseconds per tick (a 10 MHz `rdtime`, as qemu-riscv64 has).
const NS_PER_TICK: u64 = 100;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Thread {
    tid: u32,
    /// (address, index in the hot set) of the open calls.
    stack: Vec<(u64, u64)>,
    buf: Vec<u8>,
    records: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gen-trace: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: gen-trace PROGRAM OUT RECORDS [THREADS] [graph|entry]".into());
    }
    let program = std::fs::canonicalize(&args[0]).map_err(|e| format!("{}: {e}", args[0]))?;
    let out_path = &args[1];
    let total: u64 = args[2]
        .parse()
        .map_err(|_| format!("{}: not a record count", args[2]))?;
    let threads: u32 = match args.get(3) {
        Some(t) => t.parse().map_err(|_| format!("{t}: not a thread count"))?,
        None => 4,
    }
    .max(1);
    let mode = match args.get(4).map(String::as_str) {
        None | Some("graph") => Mode::Graph,
        Some("entry") => Mode::Entry,
        Some(m) => return Err(format!("{m}: not a mode (graph or entry)")),
    };
    let bytes = std::fs::read(&program).map_err(|e| format!("{}: {e}", program.display()))?;
    let elf = Elf::parse(&bytes).ok_or_else(|| format!("{}: no symbols", program.display()))?;
    let mut funcs = vec![FuncSym::default(); elf.symbol_count()];
    let n = elf.sorted_functions(&mut funcs);
    funcs.truncate(n);
    funcs.retain(|f| f.size > 0 && !elf.name(f.index).is_empty());
    funcs.dedup_by_key(|f| f.addr);
    if funcs.is_empty() {
        return Err(format!("{}: no function symbols", program.display()));
    }

    let file = std::fs::File::create(out_path).map_err(|e| format!("{out_path}: {e}"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let path = program.to_string_lossy().into_owned();
    let (tick0, ns0) = (1_000_000u64, 5_000_000_000u64);
    let header = Header {
        mode,
        load_bias: 0,
        tick0,
        ns0,
        pid: 4242,
    };
    let mut head = vec![0u8; 8192];
    let size = encode_header(&header, path.as_bytes(), &mut head).ok_or("path too long")?;
    let mut write = |b: &[u8]| out.write_all(b).map_err(|e| format!("{out_path}: {e}"));
    write(&head[..size])?;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ts: Vec<Thread> = (0..threads)
        .map(|i| Thread {
            tid: 4242 + i,
            stack: Vec::new(),
            buf: Vec::with_capacity(BLOCK * 24),
            records: 0,
        })
        .collect();
    let mut tick = tick0;
    let mut written = 0u64;
    // A small working set of functions, like a real program's hot paths.
    let hot: Vec<u64> = (0..HOT)
        .map(|_| funcs[rng.below(funcs.len() as u64) as usize].addr)
        .collect();
    while written < total {
        let t = &mut ts[rng.below(u64::from(threads)) as usize];
        // One block's worth of this thread's calls.
        while t.records < BLOCK && written < total {
            tick += 1 + rng.below(20);
            let depth = t.stack.len();
            let enter = depth == 0 || (depth < MAX_DEPTH && rng.below(100) < 52);
            let rec = if enter {
                // A root, or one of the two callees of the caller.
                let pick = match t.stack.last() {
                    None => rng.below(4),
                    Some(&(_, caller)) => (caller * 7 + 1 + rng.below(2) * 6) % HOT,
                };
                let addr = hot[pick as usize];
                t.stack.push((addr, pick));
                Record {
                    time: tick,
                    addr,
                    tid: t.tid,
                    depth: depth as u16,
                    kind: Kind::Entry,
                }
            } else {
                let (addr, _) = t.stack.pop().unwrap_or_default();
                if mode == Mode::Entry {
                    continue;
                }
                Record {
                    time: tick,
                    addr,
                    tid: t.tid,
                    depth: (depth - 1) as u16,
                    kind: Kind::Exit,
                }
            };
            t.buf.extend_from_slice(&rec.encode());
            t.records += 1;
            written += 1;
        }
        write(&t.buf)?;
        t.buf.clear();
        t.records = 0;
    }
    // Close the calls still open (graph traces), then the clock calibration.
    for t in &mut ts {
        if mode == Mode::Entry {
            t.stack.clear();
        }
        while let Some((addr, _)) = t.stack.pop() {
            tick += 1;
            let rec = Record {
                time: tick,
                addr,
                tid: t.tid,
                depth: t.stack.len() as u16,
                kind: Kind::Exit,
            };
            t.buf.extend_from_slice(&rec.encode());
        }
        write(&t.buf)?;
        t.buf.clear();
    }
    let clock = Record {
        time: tick,
        addr: ns0 + (tick - tick0) * NS_PER_TICK,
        tid: ts[0].tid,
        depth: 0,
        kind: Kind::Clock,
    };
    write(&clock.encode())?;
    out.flush().map_err(|e| format!("{out_path}: {e}"))?;
    Ok(())
}
