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
//!   so uftrace finds the session of each record) and one `TASK` line per thread (a `FORK`
//!   line, with its parent, for the first thread of a forked child).
//! - `sid-<id>.map`: one mapping of the program, where the `.dat` addresses fall, one of
//!   each library a preloaded runtime traced (every load of one file is one mapping, where
//!   it was loaded when that place is free), and a `[stack]` line: uftrace takes its
//!   kernel/user boundary from the stack's address, and without one would take every
//!   address for a kernel address.
//! - `<program>.sym`: the program's function symbols as offsets into that mapping, with end
//!   markers where a function ends before the next begins. A traced address where no symbol
//!   starts gets a symbol of its own named as padtrim names it (`f+0x4`, `0x1234`), so
//!   uftrace shows every function under padtrim's name. Each library a preloaded runtime
//!   traced has its own `<library>.sym` in the same form (from its file when replay found
//!   it, else only its traced functions, named `file+offset`), under the name uftrace looks
//!   for: its mapping's file name, or on a clash the name uftrace then tries
//!   (`make_new_symbol_filename`: `-` and 4 hex digits added).
//! - `<tid>.dat`: 16-byte records per thread (time in ns, then type, magic, depth and a
//!   48-bit address in one word). Graph traces: each call's entry and exit, paired as
//!   `padtrim replay` pairs them (unwound and unfinished calls end where replay ends them).
//!   Entry-only traces: the entries, each with an exit put at the next entry at the same or
//!   an outer depth on its thread (or at the thread's last entry), so that uftrace shows the
//!   nesting and counts every call; those durations are the time to the next call at that
//!   depth, not measured ones.
//! - Arguments and return values (`record --args`): a record with the `more` bit (bit 2 of
//!   its second word) is followed by its values, 8 bytes each (uftrace reads each integer
//!   argument as a `long`, 8-byte aligned), in the order of its function's spec; `info` gets
//!   the ARG_SPEC lines (`argspec:` and `retspec:`, one exact name per function with the
//!   fields it carries), `pattern_type:simple`, and the ARGUMENT and RETVAL feature bits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use padtrim_runtime::format::Mode;

use padtrim_runtime::format::untag;

use super::identity::Identity;
use super::model::{ArgVals, EventKind, IntMap, Pairing, Symbols, Trace};

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
const ARGUMENT: u64 = 1 << 3;
const RETVAL: u64 = 1 << 4;
const SYM_REL_ADDR: u64 = 1 << 5;
const MAX_STACK: u64 = 1 << 6;
// Info bits (`enum uftrace_info_bits`), in the order their lines must come.
const EXE_NAME: u64 = 1 << 0;
const EXE_BUILD_ID: u64 = 1 << 1;
const EXIT_STATUS: u64 = 1 << 2;
const CMDLINE: u64 = 1 << 3;
const TASKINFO: u64 = 1 << 7;
const ARG_SPEC: u64 = 1 << 10;
const PATTERN_TYPE: u64 = 1 << 12;
const VERSION: u64 = 1 << 13;
/// uftrace's record magic (RECORD_MAGIC_V4), in bits 3..6 of a record's second word.
const RECORD_MAGIC: u64 = 5;
const UFTRACE_ENTRY: u64 = 0;
const UFTRACE_EXIT: u64 = 1;
/// The record's `more` bit: argument or return value data follows it.
const MORE: u64 = 1 << 2;
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

/// Where a mapping lies: its link-time start, and the runtime start uftrace sees.
#[derive(Clone, Copy)]
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

/// The page-aligned link-time start and size covering a file's loadable segments (if it
/// is at hand) and the link-time addresses of its traced functions; an error naming `what`
/// when that is more than uftrace's user addresses.
fn extent(
    elf: Option<&[u8]>,
    addrs: impl Iterator<Item = u64>,
    what: &str,
) -> anyhow::Result<(u64, u64)> {
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    if let Some((a, b)) = elf.and_then(load_range) {
        lo = a;
        hi = b;
    }
    for a in addrs {
        lo = lo.min(a);
        hi = hi.max(a.saturating_add(1));
    }
    if lo > hi {
        (lo, hi) = (0, PAGE);
    }
    let link_base = lo & !(PAGE - 1);
    let size = (hi - link_base).div_ceil(PAGE) * PAGE;
    if size >= ADDR_LIMIT - PAGE {
        bail!("{what} spans {size:#x} bytes, more than uftrace's 47-bit user addresses");
    }
    Ok((link_base, size))
}

/// The program's mapping: its file and its traced functions (module 0).
fn layout(trace: &Trace, elf: &[u8]) -> anyhow::Result<Layout> {
    let program = trace.addrs.iter().copied().filter(|&a| untag(a).0 == 0);
    let what = format!("{}: the program", trace.elf_path.display());
    let (link_base, size) = extent(Some(elf), program, &what)?;
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

/// Where the `[stack]` line of the map file puts the stack.
const STACK: (u64, u64) = (0x7fff_fffd_e000, 0x7fff_ffff_f000);

/// A runtime start for a library's mapping of `size` bytes that overlaps none of `taken`:
/// where it was loaded (`at`) when that is free, else the first free place after one of
/// them.
fn place(at: Option<u64>, size: u64, taken: &[(u64, u64)]) -> Option<u64> {
    let free = |b: u64| {
        b >= PAGE
            && b.checked_add(size).is_some_and(|end| {
                end < ADDR_LIMIT && taken.iter().all(|&(s, e)| end <= s || b >= e)
            })
    };
    at.into_iter()
        .chain(taken.iter().map(|t| t.1.div_ceil(PAGE) * PAGE))
        .find(|&b| free(b))
}

/// The `.sym` file uftrace 0.13 reads for a mapping of `path` when `<file name>.sym` holds
/// another mapping's symbols (`load_module_symbol`, `make_new_symbol_filename`): the first
/// 4 hex digits of the mapping's build-id added, or without one the 16-bit sum of the
/// path's bytes (as C `char`s, signed on x86-64).
fn other_sym_file(base: &str, path: &str, build_id: Option<&str>) -> String {
    match build_id {
        Some(id) => format!("{base}-{}.sym", &id[..id.len().min(4)]),
        None => {
            let sum = path
                .bytes()
                .fold(0u16, |s, b| s.wrapping_add(b as i8 as i16 as u16));
            format!("{base}-{sum:04x}.sym")
        }
    }
}

/// One mapping of the session: the program or a traced library.
struct Mapping {
    /// Its path in the map file and in its `.sym` file's `# path name`.
    path: String,
    /// Its `.sym` file's name.
    sym_file: String,
    /// Its 20-byte GNU build-id in hex.
    build_id: Option<String>,
    layout: Layout,
    /// Its function symbols as (link-time address, size, name), in address order.
    syms: Vec<(u64, u64, String)>,
}

/// The function symbols of a mapping laid out as `layout`: those of its file (`elf`) that
/// fall in it, and one for each traced function (link-time address, name, in address order)
/// where none starts.
fn mapping_symbols<'a>(
    elf: Option<&[u8]>,
    layout: &Layout,
    traced: impl Iterator<Item = (u64, &'a str)>,
) -> Vec<(u64, u64, String)> {
    let symbols = elf.and_then(Symbols::new);
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
    for (a, name) in traced {
        if syms.binary_search_by_key(&a, |s| s.0).is_err() {
            syms.push((a, 0, name.to_string()));
        }
    }
    syms.sort_by_key(|s| s.0);
    syms
}

/// Write a mapping's `.sym` file into `dir`.
fn write_sym_file(dir: &Path, m: &Mapping) -> anyhow::Result<()> {
    let path = dir.join(&m.sym_file);
    let f = File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 16, f);
    let (lo, syms) = (m.layout.link_base, &m.syms);
    let mut write_syms = || -> std::io::Result<()> {
        writeln!(w, "# symbols: {}", syms.len())?;
        writeln!(w, "# path name: {}", m.path)?;
        if let Some(id) = &m.build_id {
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
        w.flush()
    };
    write_syms().with_context(|| format!("{}: cannot write", path.display()))
}

/// The mappings of the libraries a preloaded runtime traced, placed around `program`'s:
/// one for each file (path and build-id) with traced functions, in module id order, with
/// the module ids it stands for.
fn library_mappings(trace: &Trace, program: &Mapping) -> anyhow::Result<Vec<(Mapping, Vec<u32>)>> {
    // Each module's traced functions, as (link-time address, name).
    let mut functions: IntMap<u32, Vec<(u64, &str)>> = IntMap::default();
    for (i, &a) in trace.addrs.iter().enumerate() {
        let (id, link) = untag(a);
        if id != 0 {
            functions
                .entry(id)
                .or_default()
                .push((link, trace.names[i].as_str()));
        }
    }
    let mut ids: Vec<u32> = functions.keys().copied().collect();
    ids.sort_unstable();
    // One file loaded twice (a plugin opened again) is one mapping.
    // (path, build-id) of a file, and the ids of its loads.
    type Group = ((Vec<u8>, Vec<u8>), Vec<u32>);
    let mut groups: Vec<Group> = Vec::new();
    for id in ids {
        let key = trace.modules.iter().find(|m| m.id == id).map_or_else(
            || (format!("module-{id}").into_bytes(), Vec::new()),
            |m| (m.path.clone(), m.build_id.clone()),
        );
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(id),
            None => groups.push((key, vec![id])),
        }
    }
    let p = &program.layout;
    let mut taken = vec![(p.base, p.base + p.size), STACK];
    let mut paths = vec![program.path.clone()];
    let mut sym_files = vec![program.sym_file.clone()];
    let mut out = Vec::new();
    for ((path, build_id), ids) in groups {
        let module = trace.modules.iter().find(|m| m.id == ids[0]);
        // Its file again, if replay found it (quietly: replay warned when it did not).
        let elf = module.filter(|m| m.found).and_then(|m| m.read().ok());
        let mut traced: Vec<(u64, &str)> = ids
            .iter()
            .flat_map(|id| functions[id].iter().copied())
            .collect();
        traced.sort_by_key(|t| t.0);
        traced.dedup_by_key(|t| t.0);
        let plain = plain_path(&String::from_utf8_lossy(&path));
        let what = format!("{plain}: the library");
        let (link_base, size) = extent(elf.as_deref(), traced.iter().map(|t| t.0), &what)?;
        let at = module
            .and_then(|m| m.load_bias)
            .map(|bias| link_base.wrapping_add(bias));
        let Some(base) = place(at, size, &taken) else {
            bail!("{what}: no room for it below uftrace's 47-bit user addresses");
        };
        taken.push((base, base + size));
        let build_id = Some(build_id)
            .filter(|id| id.len() == 20)
            .map(|id| hex(&id));
        // A path and a `.sym` file of its own, named as uftrace looks for them (a second
        // line with the path of the line before would be taken for more of its mapping).
        let (path, sym_file) = (0..)
            .map(|n| match n {
                0 => plain.clone(),
                n => format!("{plain}#{n}"),
            })
            .filter(|p| !paths.contains(p))
            .find_map(|p| {
                let base = p.rsplit('/').next().unwrap_or(&p).to_string();
                [
                    format!("{base}.sym"),
                    other_sym_file(&base, &p, build_id.as_deref()),
                ]
                .into_iter()
                .find(|f| !sym_files.contains(f))
                .map(|f| (p, f))
            })
            .unwrap_or_default();
        paths.push(path.clone());
        sym_files.push(sym_file.clone());
        let layout = Layout {
            link_base,
            base,
            size,
        };
        let syms = mapping_symbols(elf.as_deref(), &layout, traced.into_iter());
        out.push((
            Mapping {
                path,
                sym_file,
                build_id,
                layout,
                syms,
            },
            ids,
        ));
    }
    Ok(out)
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

    // The symbol files: the program's, then each traced library's.
    let program = Mapping {
        path: exe.clone(),
        sym_file: format!("{exe_base}.sym"),
        build_id: build_id.clone(),
        layout,
        syms: mapping_symbols(
            Some(&elf),
            &layout,
            trace
                .addrs
                .iter()
                .zip(&trace.names)
                .filter(|(&a, _)| untag(a).0 == 0)
                .map(|(&a, n)| (a, n.as_str())),
        ),
    };
    write_sym_file(dir, &program)?;
    let libraries = library_mappings(trace, &program)?;
    for (m, _) in &libraries {
        write_sym_file(dir, m)?;
    }

    // The session's memory map.
    let (map_path, mut w) = file(&format!("sid-{sid}.map"))?;
    let mut lines = String::new();
    for m in std::iter::once(&program).chain(libraries.iter().map(|l| &l.0)) {
        let id_suffix = m
            .build_id
            .as_ref()
            .map(|id| format!(" build-id:{id}"))
            .unwrap_or_default();
        lines += &format!(
            "{:x}-{:x} r-xp 00000000 00:00 0                          {}{id_suffix}\n",
            m.layout.base,
            m.layout.base + m.layout.size,
            m.path
        );
    }
    lines += "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]\n";
    w.write_all(lines.as_bytes())
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
        lines += &match th.forked_from {
            // uftrace takes the child's pid from its tid, and its session from its parent.
            Some(parent) => format!(
                "FORK timestamp={} pid={} ppid={parent}\n",
                timestamp(abs(th.first_ns)),
                th.tid,
            ),
            None => format!(
                "TASK timestamp={} tid={} pid={}\n",
                timestamp(abs(th.first_ns)),
                th.tid,
                trace.pid
            ),
        };
    }
    w.write_all(lines.as_bytes())
        .with_context(|| format!("{}: cannot write", task_path.display()))?;
    done((task_path, w))?;

    // One data file per thread.
    let mut mapping_of: IntMap<u32, Layout> = IntMap::default();
    mapping_of.insert(0, program.layout);
    for (m, ids) in &libraries {
        for &id in ids {
            mapping_of.insert(id, m.layout);
        }
    }
    let addr_of = |func: usize| {
        let (id, link) = untag(trace.addrs[func]);
        let l = mapping_of.get(&id).unwrap_or(&program.layout);
        l.base + (link - l.link_base)
    };
    // Arguments and return values (`record --args`): the `more` bit on the record, then the
    // values, 8 bytes each, in the order of the function's spec (`info`'s argspec and
    // retspec, written at the end from what was met here). A function's fields are those of
    // its first recorded call (the spec gives every call the same ones).
    let mut arg_masks: IntMap<usize, u8> = IntMap::default();
    let mut ret_funcs: Vec<usize> = Vec::new();
    let speccable = |func: usize| {
        let n = &trace.names[func];
        !n.is_empty() && !n.contains(['@', ';', ',', ' ', '\n'])
    };
    for (ti, th) in trace.threads.iter().enumerate() {
        let (path, mut w) = file(&format!("{}.dat", th.tid))?;
        let mut error = None;
        let mut put = |w: &mut BufWriter<File>,
                       kind: u64,
                       ns: f64,
                       depth: usize,
                       func: usize,
                       data: &[u64]| {
            let more = if data.is_empty() { 0 } else { MORE };
            let word = kind
                | more
                | RECORD_MAGIC << 3
                | (depth.min(MAX_DEPTH) as u64) << 6
                | addr_of(func) << 16;
            let mut rec = Vec::with_capacity(16 + 8 * data.len());
            rec.extend_from_slice(&abs(ns).to_le_bytes());
            rec.extend_from_slice(&word.to_le_bytes());
            for v in data {
                rec.extend_from_slice(&v.to_le_bytes());
            }
            if let Err(e) = w.write_all(&rec) {
                error.get_or_insert(e);
            }
        };
        let mut entry_data = |func: usize, args: Option<ArgVals>| -> Vec<u64> {
            let Some(a) = args.filter(|a| a.mask != 0 && speccable(func)) else {
                return Vec::new();
            };
            let mask = *arg_masks.entry(func).or_insert(a.mask);
            (0..8)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| if a.mask & (1 << i) != 0 { a.vals[i] } else { 0 })
                .collect()
        };
        let mut exit_data = |func: usize, ret: Option<u64>| -> Vec<u64> {
            match ret {
                Some(v) if speccable(func) => {
                    if !ret_funcs.contains(&func) {
                        ret_funcs.push(func);
                    }
                    vec![v]
                }
                _ => Vec::new(),
            }
        };
        let mut events = trace.events(ti)?;
        if trace.mode == Mode::Graph {
            let mut pairing = Pairing::default();
            while let Some(e) = events.next_event()? {
                if e.kind == EventKind::Entry {
                    let (_, level, _) = pairing.enter(&e);
                    let data = entry_data(e.func, e.args);
                    put(&mut w, UFTRACE_ENTRY, e.ns, level, e.func, &data);
                } else {
                    pairing.leave(&e, |c| {
                        let data = exit_data(c.span.func, c.span.ret);
                        put(
                            &mut w,
                            UFTRACE_EXIT,
                            c.span.end,
                            c.span.level,
                            c.span.func,
                            &data,
                        )
                    });
                }
            }
            pairing.close_all(events.last_ns(), |c| {
                put(
                    &mut w,
                    UFTRACE_EXIT,
                    c.span.end,
                    c.span.level,
                    c.span.func,
                    &[],
                )
            });
        } else {
            let mut stack: Vec<usize> = Vec::new();
            while let Some(e) = events.next_event()? {
                if e.kind != EventKind::Entry {
                    continue;
                }
                while stack.len() > e.depth as usize {
                    let func = stack.pop().unwrap_or_default();
                    put(&mut w, UFTRACE_EXIT, e.ns, stack.len(), func, &[]);
                }
                let data = entry_data(e.func, e.args);
                put(&mut w, UFTRACE_ENTRY, e.ns, stack.len(), e.func, &data);
                stack.push(e.func);
            }
            let last = events.last_ns();
            while let Some(func) = stack.pop() {
                put(&mut w, UFTRACE_EXIT, last, stack.len(), func, &[]);
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
    let mut feat = TASK_SESSION | SYM_REL_ADDR | MAX_STACK;
    if !arg_masks.is_empty() || !ret_funcs.is_empty() {
        // Exact names (pattern_type simple: no glob characters in them), each with the
        // fields its records carry.
        let mut args: Vec<(&str, u8)> = arg_masks
            .iter()
            .map(|(&f, &m)| (trace.names[f].as_str(), m))
            .collect();
        args.sort();
        let argspec: String = args
            .iter()
            .map(|(name, m)| {
                let fields: Vec<String> = (0..8)
                    .filter(|i| m & (1 << i) != 0)
                    .map(|i| format!("arg{}", i + 1))
                    .collect();
                format!("{name}@{};", fields.join(","))
            })
            .collect();
        let mut rets: Vec<&str> = ret_funcs.iter().map(|&f| trace.names[f].as_str()).collect();
        rets.sort();
        let retspec: String = rets.iter().map(|n| format!("{n}@retval;")).collect();
        let mut lines = Vec::new();
        if !argspec.is_empty() {
            feat |= ARGUMENT;
            lines.push(format!("argspec:{argspec}"));
        }
        if !retspec.is_empty() {
            feat |= RETVAL;
            lines.push(format!("retspec:{retspec}"));
        }
        info_mask |= ARG_SPEC | PATTERN_TYPE;
        text += &format!("argspec:lines={}\n", lines.len());
        for l in lines {
            text += &l;
            text.push('\n');
        }
        text += "pattern_type:simple\n";
    }
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
    header.extend_from_slice(&feat.to_le_bytes());
    header.extend_from_slice(&info_mask.to_le_bytes());
    header.extend_from_slice(&((MAX_DEPTH + 1) as u16).to_le_bytes());
    header.extend_from_slice(&[0u8; 6]);
    let (info_path, mut w) = file("info")?;
    w.write_all(&header)
        .and_then(|()| w.write_all(text.as_bytes()))
        .with_context(|| format!("{}: cannot write", info_path.display()))?;
    done((info_path, w))
}
