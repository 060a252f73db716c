//! A trace as a uftrace data directory (the layout `uftrace record` writes, file version 4),
//! so uftrace's own commands (`replay`, `report`, `graph`, `info`, `dump`) read it without
//! the RISC-V program at hand: they take the symbols from the `.sym` file written here.
//!
//! What uftrace 0.13 reads, and what is written for it:
//! - `info`: a 40-byte header (magic `Ftrace!`, version 4, little-endian, ELF class 64,
//!   feature bits: task sessions, relative symbol addresses, max stack) and the text lines
//!   of the info bits set: exename, build_id (only a 20-byte GNU build-id: uftrace reads
//!   exactly 40 hex digits), exit_status (a wait status, when known), cmdline (always:
//!   `uftrace dump --chrome` writes broken JSON without it; the program alone on replay),
//!   taskinfo (the thread ids; uftrace finds no data without it) and uftrace_version. No
//!   cpuinfo: uftrace guesses the architecture from its description and knows no RISC-V
//!   (it would take a 64-bit one for x86-64); nothing it shows depends on it.
//! - `task.txt`: a `SESS` line (its time is the start of the trace, before every record,
//!   so uftrace finds the session of each record) and one `TASK` line per thread.
//! - `sid-<id>.map`: one mapping of the program, where the `.dat` addresses fall, and a
//!   `[stack]` line: uftrace takes its kernel/user boundary from the stack's address, and
//!   without one would take every address for a kernel address.
//! - `<program>.sym`: the program's function symbols as offsets into that mapping, with end
//!   markers where a function ends before the next begins. A traced address where no symbol
//!   starts gets a symbol of its own named as padtrim names it (`f+0x4`, `0x1234`), so
//!   uftrace shows every function under padtrim's name.
//! - `<tid>.dat`: 16-byte records per thread (time in ns, then type, magic, depth and a
//!   48-bit address in one word). Graph traces: each call's entry and exit, paired as
//!   `padtrim replay` pairs them (unwound and unfinished calls end where replay ends them).
//!   Entry-only traces: the entries, each with an exit put at the next entry at the same or
//!   an outer depth on its thread (or at the thread's last entry), so that uftrace shows the
//!   nesting and counts every call; those durations are the time to the next call at that
//!   depth, not measured ones.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use padtrim_runtime::format::Mode;

use super::identity::Identity;
use super::model::{EventKind, Pairing, Symbols, Trace};

/// What `padtrim record` knows about the run (a trace alone does not say).
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    /// The wait status of the program (as `waitpid` gives it).
    pub wait_status: Option<i32>,
    /// The command line that ran it.
    pub cmdline: Option<String>,
}

const MAGIC: &[u8; 8] = b"Ftrace!\0";
const FILE_VERSION: u32 = 4;
const HEADER_SIZE: u16 = 40;
const ELFDATA2LSB: u8 = 1;
const ELFCLASS64: u8 = 2;
// Feature bits (uftrace.h, `enum uftrace_feat_bits`).
const TASK_SESSION: u64 = 1 << 1;
const SYM_REL_ADDR: u64 = 1 << 5;
const MAX_STACK: u64 = 1 << 6;
// Info bits (`enum uftrace_info_bits`), in the order their lines must come.
const EXE_NAME: u64 = 1 << 0;
const EXE_BUILD_ID: u64 = 1 << 1;
const EXIT_STATUS: u64 = 1 << 2;
const CMDLINE: u64 = 1 << 3;
const TASKINFO: u64 = 1 << 7;
const VERSION: u64 = 1 << 13;
/// uftrace's record magic (RECORD_MAGIC_V4), in bits 3..6 of a record's second word.
const RECORD_MAGIC: u64 = 5;
const UFTRACE_ENTRY: u64 = 0;
const UFTRACE_EXIT: u64 = 1;
/// Depth is a 10-bit field.
const MAX_DEPTH: usize = 1023;
/// Addresses are 48-bit, and must stay below the kernel boundary uftrace takes from the
/// `[stack]` line written here (0xffff800000000000).
const ADDR_LIMIT: u64 = 1 << 47;
const PAGE: u64 = 4096;

/// Refuse, before any work, a directory that is not ours to fill: an existing file, or a
/// directory with files that is not a uftrace data directory (no `info`).
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let name = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    bail!("{name}: no such directory {}", parent.display());
                }
            }
            Ok(())
        }
        Err(e) => bail!("{name}: cannot read: {e}"),
        Ok(m) if !m.is_dir() => bail!("{name}: exists and is not a directory"),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("{name}: cannot read"))?;
            if entries.next().is_some() && !dir.join("info").is_file() {
                bail!(
                    "{name}: not empty and not a uftrace data directory (no info file); \
                     refusing to write into it"
                );
            }
            Ok(())
        }
    }
}

/// Remove what an earlier recording left in `dir`, so no old thread or symbol file mixes
/// with the new ones.
fn clear_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot read", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name == "info"
            || name == "task.txt"
            || name == "default.opts"
            || name.ends_with(".dat")
            || name.ends_with(".sym")
            || (name.starts_with("sid-") && name.ends_with(".map"));
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("{}: cannot remove", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Where the program is mapped: its link-time start, and the runtime start uftrace sees.
struct Layout {
    link_base: u64,
    base: u64,
    size: u64,
}

/// Lowest start and highest end of the program's loadable segments (PT_LOAD).
fn load_range(elf: &[u8]) -> Option<(u64, u64)> {
    let rd = |at: usize, n: usize| -> Option<u64> {
        let b = elf.get(at..at.checked_add(n)?)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    };
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let phoff = rd(0x20, 8)? as usize;
    let phentsize = rd(0x36, 2)? as usize;
    let phnum = rd(0x38, 2)? as usize;
    let mut range: Option<(u64, u64)> = None;
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if rd(at, 4)? != 1 {
            continue; // not PT_LOAD
        }
        let vaddr = rd(at + 0x10, 8)?;
        let end = vaddr.checked_add(rd(at + 0x28, 8)?)?;
        range = Some(match range {
            Some((lo, hi)) => (lo.min(vaddr), hi.max(end)),
            None => (vaddr, end),
        });
    }
    range
}

fn layout(trace: &Trace, elf: &[u8]) -> anyhow::Result<Layout> {
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    if let Some((a, b)) = load_range(elf) {
        lo = a;
        hi = b;
    }
    for &a in &trace.addrs {
        lo = lo.min(a);
        hi = hi.max(a.saturating_add(1));
    }
    if lo > hi {
        (lo, hi) = (0, PAGE);
    }
    let link_base = lo & !(PAGE - 1);
    let size = (hi - link_base).div_ceil(PAGE) * PAGE;
    if size >= ADDR_LIMIT - PAGE {
        bail!(
            "{}: the program spans {size:#x} bytes, more than uftrace's 47-bit user addresses",
            trace.elf_path.display()
        );
    }
    // Where the program ran, when that fits; else where it was linked; else one page up.
    let base = [link_base.wrapping_add(trace.load_bias), link_base]
        .into_iter()
        .find(|&b| b >= PAGE && b.checked_add(size).is_some_and(|end| end < ADDR_LIMIT))
        .unwrap_or(PAGE);
    Ok(Layout {
        link_base,
        base,
        size,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The command line as uftrace stores it: it copies it into JSON as it is, so quotes and
/// backslashes are escaped, and control characters become spaces.
fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `sec.nsec`, as task.txt spells times.
fn timestamp(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// uftrace splits map and task lines at white space: a path with some gets `_` instead.
fn plain_path(exe: &str) -> String {
    let p: String = exe
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '"' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if p.is_empty() || p.ends_with('/') {
        format!("{p}program")
    } else {
        p
    }
}

/// Write `trace` into `dir` as a uftrace data directory.
pub fn export(trace: &Trace, dir: &Path, run: &RunInfo) -> anyhow::Result<()> {
    check_dir(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    clear_dir(dir)?;
    let elf = std::fs::read(&trace.elf_path).with_context(|| {
        format!(
            "{}: cannot read the traced program",
            trace.elf_path.display()
        )
    })?;
    let layout = layout(trace, &elf)?;
    let build_id = Identity::of(&elf)
        .build_id
        .filter(|id| id.len() == 20)
        .map(|id| hex(&id));
    let exe = plain_path(&trace.exe);
    let exe_base = exe.rsplit('/').next().unwrap_or(&exe).to_string();
    let start_ns = trace.clock.ns0;
    let sid = {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in u64::from(trace.pid)
            .to_le_bytes()
            .iter()
            .chain(start_ns.to_le_bytes().iter())
            .chain(exe.as_bytes())
        {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    };
    let abs = |ns: f64| start_ns.saturating_add(ns.round() as u64);

    let file = |name: &str| -> anyhow::Result<(PathBuf, BufWriter<File>)> {
        let path = dir.join(name);
        let f =
            File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        Ok((path, BufWriter::with_capacity(1 << 16, f)))
    };
    let done = |(path, mut w): (PathBuf, BufWriter<File>)| -> anyhow::Result<()> {
        w.flush()
            .with_context(|| format!("{}: cannot write", path.display()))
    };

    // The symbol file.
    let (sym_path, mut w) = file(&format!("{exe_base}.sym"))?;
    let symbols = Symbols::new(&elf);
    let (lo, hi) = (layout.link_base, layout.link_base + layout.size);
    let mut syms: Vec<(u64, u64, String)> = symbols
        .as_ref()
        .map(|s| {
            s.functions()
                .filter(|(a, _, n)| *a >= lo && *a < hi && !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    syms.dedup_by_key(|s| s.0);
    for (i, &a) in trace.addrs.iter().enumerate() {
        if syms.binary_search_by_key(&a, |s| s.0).is_err() {
            syms.push((a, 0, trace.names[i].clone()));
        }
    }
    syms.sort_by_key(|s| s.0);
    let write_syms = |w: &mut BufWriter<File>| -> std::io::Result<()> {
        writeln!(w, "# symbols: {}", syms.len())?;
        writeln!(w, "# path name: {exe}")?;
        if let Some(id) = &build_id {
            writeln!(w, "# build-id: {id}")?;
        }
        for (i, (a, size, name)) in syms.iter().enumerate() {
            let name: String = name
                .chars()
                .map(|c| if c == '\n' { ' ' } else { c })
                .collect();
            writeln!(w, "{:016x} T {name}", a - lo)?;
            let end = a + (*size).max(1);
            match syms.get(i + 1) {
                Some(next) if next.0 <= end => {}
                Some(_) => writeln!(w, "{:016x} ? __func_end", end - lo)?,
                None => writeln!(w, "{:016x} ? __sym_end", end - lo)?,
            }
        }
        Ok(())
    };
    write_syms(&mut w).with_context(|| format!("{}: cannot write", sym_path.display()))?;
    done((sym_path, w))?;

    // The session's memory map.
    let (map_path, mut w) = file(&format!("sid-{sid}.map"))?;
    let id_suffix = build_id
        .as_ref()
        .map(|id| format!(" build-id:{id}"))
        .unwrap_or_default();
    writeln!(
        w,
        "{:x}-{:x} r-xp 00000000 00:00 0                          {exe}{id_suffix}",
        layout.base,
        layout.base + layout.size
    )
    .and_then(|()| {
        writeln!(
            w,
            "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]"
        )
    })
    .with_context(|| format!("{}: cannot write", map_path.display()))?;
    done((map_path, w))?;

    // Tasks.
    let (task_path, mut w) = file("task.txt")?;
    let mut lines = format!(
        "SESS timestamp={} pid={} sid={sid} exename=\"{exe}\"\n",
        timestamp(start_ns),
        trace.pid
    );
    for th in &trace.threads {
        lines += &format!(
            "TASK timestamp={} tid={} pid={}\n",
            timestamp(abs(th.first_ns)),
            th.tid,
            trace.pid
        );
    }
    w.write_all(lines.as_bytes())
        .with_context(|| format!("{}: cannot write", task_path.display()))?;
    done((task_path, w))?;

    // One data file per thread.
    let addr_of = |func: usize| layout.base + (trace.addrs[func] - layout.link_base);
    for (ti, th) in trace.threads.iter().enumerate() {
        let (path, mut w) = file(&format!("{}.dat", th.tid))?;
        let mut error = None;
        let mut put = |w: &mut BufWriter<File>, kind: u64, ns: f64, depth: usize, func: usize| {
            let word =
                kind | RECORD_MAGIC << 3 | (depth.min(MAX_DEPTH) as u64) << 6 | addr_of(func) << 16;
            let mut rec = [0u8; 16];
            rec[..8].copy_from_slice(&abs(ns).to_le_bytes());
            rec[8..].copy_from_slice(&word.to_le_bytes());
            if let Err(e) = w.write_all(&rec) {
                error.get_or_insert(e);
            }
        };
        let mut events = trace.events(ti)?;
        if trace.mode == Mode::Graph {
            let mut pairing = Pairing::default();
            while let Some(e) = events.next_event()? {
                if e.kind == EventKind::Entry {
                    let (_, level, _) = pairing.enter(&e);
                    put(&mut w, UFTRACE_ENTRY, e.ns, level, e.func);
                } else {
                    pairing.leave(&e, |c| {
                        put(&mut w, UFTRACE_EXIT, c.span.end, c.span.level, c.span.func)
                    });
                }
            }
            pairing.close_all(events.last_ns(), |c| {
                put(&mut w, UFTRACE_EXIT, c.span.end, c.span.level, c.span.func)
            });
        } else {
            let mut stack: Vec<usize> = Vec::new();
            while let Some(e) = events.next_event()? {
                if e.kind != EventKind::Entry {
                    continue;
                }
                while stack.len() > e.depth as usize {
                    let func = stack.pop().unwrap_or_default();
                    put(&mut w, UFTRACE_EXIT, e.ns, stack.len(), func);
                }
                put(&mut w, UFTRACE_ENTRY, e.ns, stack.len(), e.func);
                stack.push(e.func);
            }
            let last = events.last_ns();
            while let Some(func) = stack.pop() {
                put(&mut w, UFTRACE_EXIT, last, stack.len(), func);
            }
        }
        if let Some(e) = error {
            bail!("{}: cannot write: {e}", path.display());
        }
        done((path, w))?;
    }

    // The info file last: until it is there, uftrace refuses the directory, so an export
    // that failed half-way is not taken for a whole one.
    let mut info_mask = EXE_NAME | TASKINFO | VERSION;
    let mut text = format!("exename:{exe}\n");
    if let Some(id) = &build_id {
        info_mask |= EXE_BUILD_ID;
        text += &format!("build_id:{id}\n");
    }
    if let Some(status) = run.wait_status {
        info_mask |= EXIT_STATUS;
        text += &format!("exit_status:{status}\n");
    }
    // Always a command line: `uftrace dump --chrome` writes invalid JSON (a trailing comma)
    // without one. A trace does not keep the arguments: replay gives the program alone.
    info_mask |= CMDLINE;
    text += &format!(
        "cmdline:{}\n",
        json_quote(run.cmdline.as_deref().unwrap_or(&exe))
    );
    let tids: Vec<String> = trace.threads.iter().map(|t| t.tid.to_string()).collect();
    text += &format!(
        "taskinfo:lines=2\ntaskinfo:nr_tid={}\ntaskinfo:tids={}\n",
        tids.len(),
        tids.join(",")
    );
    text += &format!(
        "uftrace_version:v0.13 (written by padtrim {} from a riscv64 trace, mode {})\n",
        env!("CARGO_PKG_VERSION"),
        trace.mode.name()
    );
    let mut header = Vec::with_capacity(HEADER_SIZE as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FILE_VERSION.to_le_bytes());
    header.extend_from_slice(&HEADER_SIZE.to_le_bytes());
    header.push(ELFDATA2LSB);
    header.push(ELFCLASS64);
    header.extend_from_slice(&(TASK_SESSION | SYM_REL_ADDR | MAX_STACK).to_le_bytes());
    header.extend_from_slice(&info_mask.to_le_bytes());
    header.extend_from_slice(&((MAX_DEPTH + 1) as u16).to_le_bytes());
    header.extend_from_slice(&[0u8; 6]);
    let (info_path, mut w) = file("info")?;
    w.write_all(&header)
        .and_then(|()| w.write_all(text.as_bytes()))
        .with_context(|| format!("{}: cannot write", info_path.display()))?;
    done((info_path, w))
}
