//! `padtrim record`: check the program, run it with the runtime's environment settings, and
//! add the program's identity to the trace it wrote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{bail, Context};
use padtrim_runtime::format::{TraceFile, HEADER_FIXED_SIZE, MAX_PATH, RECORD_SIZE};

use super::identity::Identity;
use super::RecordArgs;
use crate::input::Input;

/// ELF machine number of RISC-V.
const EM_RISCV: u16 = 243;

/// Refuse an arguments spec (`--args`, `PADTRIM_ARGS`) the runtime would not follow, before
/// the program runs: one that does not parse, or that asks for return values in entry mode
/// (they are recorded by the return hook, which only graph mode installs).
fn check_arg_spec(spec: &str, graph: bool) -> anyhow::Result<()> {
    let parsed = padtrim_runtime::args::ArgSpec::parse(spec.as_bytes())
        .map_err(|e| anyhow::anyhow!("record: --args {spec:?}: {}", e.message()))?;
    if !graph && parsed.wants_retval() {
        bail!(
            "record: --args {spec:?}: retval needs --graph (return values are recorded at the \
             return, which entry mode does not hook)"
        );
    }
    Ok(())
}

/// Run the program (under qemu-riscv64 unless the host is riscv64) with PADTRIM_TRACE,
/// PADTRIM_FILTER, PADTRIM_ARGS and PADTRIM_OUT set, and return its exit status (128 + N if signal N
/// killed it). An error (exit 2) if the program is not a riscv64 program, cannot be run,
/// or wrote no trace.
pub fn record(args: &RecordArgs) -> anyhow::Result<i32> {
    let (program, rest) = match args.command.split_first() {
        Some(x) => x,
        None => {
            bail!("record: no program given (usage: padtrim record [OPTIONS] -- PROGRAM ARGS...)")
        }
    };
    let arg_spec = args
        .args
        .clone()
        .or_else(|| std::env::var("PADTRIM_ARGS").ok())
        .filter(|s| !s.trim().is_empty());
    if let Some(spec) = &arg_spec {
        check_arg_spec(spec, args.graph)?;
    }
    let input = check_program(Path::new(program))?;
    let identity = Identity::of(input.bytes());
    let carries_runtime = carries_runtime(input.bytes());
    let preload = preload_for(args, program, input.bytes(), carries_runtime)?;
    drop(input);
    // With --uftrace and no -o, the trace is a temporary file, converted and removed.
    let temporary = args.output.is_none() && args.uftrace.is_some();
    let given = match &args.output {
        Some(o) => o.clone(),
        None if temporary => {
            std::env::temp_dir().join(format!("padtrim-record-{}.trace", std::process::id()))
        }
        None => PathBuf::from("padtrim.trace"),
    };
    let out = if given.is_absolute() {
        given.clone()
    } else {
        std::env::current_dir()
            .context("record: cannot read the working directory")?
            .join(&given)
    };
    check_output(&given, &out)?;
    if let Some(dir) = &args.uftrace {
        super::uftrace::check_dir(dir).context("record: --uftrace")?;
    }
    let mut env: Vec<(&str, String)> = vec![
        (
            "PADTRIM_TRACE",
            if args.graph { "graph" } else { "entry" }.to_string(),
        ),
        ("PADTRIM_OUT", out.to_string_lossy().into_owned()),
    ];
    if let Some(f) = &args.filter {
        env.push(("PADTRIM_FILTER", f.clone()));
    }
    if let Some(a) = &arg_spec {
        env.push(("PADTRIM_ARGS", a.clone()));
    }
    // An old trace must not pass for a new one if the program fails before writing. Only
    // a regular file (or a link) is removed: never a device such as -o /dev/null, which
    // root would otherwise delete for the whole machine.
    if std::fs::symlink_metadata(&out).is_ok_and(|m| m.is_file() || m.is_symlink()) {
        let _ = std::fs::remove_file(&out);
    }
    let mut cmd = if std::env::consts::ARCH == "riscv64" {
        // A bare name means the file in the working directory, as for qemu-riscv64 (not a
        // PATH search).
        let path = if program.contains('/') {
            PathBuf::from(program)
        } else {
            Path::new(".").join(program)
        };
        let mut c = Command::new(path);
        c.args(rest);
        if let Some(lib) = &preload {
            c.env("LD_PRELOAD", native_preload(lib));
        }
        c
    } else {
        // qemu-user hands its own environment to the guest. Not `-E`: it splits its value
        // at commas (getsubopt), which would cut a PADTRIM_FILTER list apart.
        let mut c = Command::new(&args.qemu);
        c.arg("-L").arg(&args.sysroot);
        if let Some(lib) = &preload {
            c.args(qemu_preload(lib)?);
        }
        c.arg(program).args(rest);
        c
    };
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("record: cannot run {}", cmd.get_program().to_string_lossy()))?;
    if !out.exists() {
        let why = if preload.is_some() {
            "the preloaded padtrim runtime did not start tracing (see its messages above)"
        } else if carries_runtime {
            "the padtrim runtime in it did not start tracing (see its messages above)"
        } else {
            "it is not linked with the padtrim runtime (link it with the library that \
             scripts/runtime-lib prints, and build it with -fpatchable-function-entry)"
        };
        bail!(
            "record: {program} wrote no trace ({}): {why}",
            how_it_ended(status)
        );
    }
    // The identity describes the program run; a trace written by a runtime in one of its
    // shared libraries names that library's functions, so it gets none.
    if carries_runtime || preload.is_some() {
        if let Err(e) = add_identity(&out, &identity) {
            eprintln!(
                "padtrim: record: warning: {}: cannot add the program's identity ({e:#}); \
                 replay will not be able to check that it is given the right program",
                given.display()
            );
        }
    }
    use std::os::unix::process::ExitStatusExt;
    if let Some(dir) = &args.uftrace {
        let run = super::uftrace::RunInfo {
            wait_status: Some(status.into_raw()),
            cmdline: Some(args.command.join(" ")),
        };
        let converted = super::model::Trace::load(&out, Some(Path::new(program)), false)
            .and_then(|trace| super::uftrace::export(&trace, dir, &run));
        if temporary {
            let _ = std::fs::remove_file(&out);
        }
        converted.context("record: --uftrace")?;
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    })
}

/// "exited with status 0" / "killed by signal 15 (SIGTERM)".
fn how_it_ended(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("it exited with status {c}"),
        (None, Some(s)) => match signal_name(s) {
            Some(name) => format!("it was killed by signal {s} ({name})"),
            None => format!("it was killed by signal {s}"),
        },
        _ => "it ended".to_string(),
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Refuse, before running anything, a program that cannot be a riscv64 program: missing, a
/// directory, not an ELF file, an ELF file for another machine or not a program.
fn check_program(path: &Path) -> anyhow::Result<Input> {
    let name = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("record: {name}: no such file")
        }
        Err(e) => bail!("record: {name}: cannot read: {e}"),
    };
    if meta.is_dir() {
        bail!("record: {name}: is a directory, not a program");
    }
    if !meta.is_file() {
        bail!("record: {name}: not a regular file");
    }
    let input = Input::open(path).context("record")?;
    let b = input.bytes();
    if b.get(0..4) != Some(b"\x7fELF") {
        if b.starts_with(b"#!") {
            bail!("record: {name}: not an ELF file (a script); record the RISC-V program it runs");
        }
        bail!("record: {name}: not an ELF file");
    }
    let big_endian = b.get(5) == Some(&2);
    let machine = match b.get(18..20) {
        Some(&[x, y]) if big_endian => u16::from_be_bytes([x, y]),
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => bail!("record: {name}: not an ELF file (truncated header)"),
    };
    if machine != EM_RISCV {
        bail!(
            "record: {name}: not a RISC-V ELF (machine {})",
            machine_name(machine)
        );
    }
    if b.get(4) != Some(&2) {
        bail!("record: {name}: a 32-bit RISC-V ELF; padtrim records riscv64 programs");
    }
    let kind = b
        .get(16..18)
        .map_or(0, |t| u16::from_le_bytes([t[0], t[1]]));
    match kind {
        2 | 3 => {} // ET_EXEC, ET_DYN
        1 => bail!("record: {name}: a relocatable object file, not a program (link it first)"),
        4 => bail!("record: {name}: a core dump, not a program"),
        t => bail!("record: {name}: not a program (ELF type {t})"),
    }
    Ok(input)
}

/// The usual name of an ELF machine number.
fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        8 => "MIPS".into(),
        20 => "PowerPC".into(),
        21 => "PowerPC64".into(),
        22 => "S/390".into(),
        40 => "ARM".into(),
        62 => "x86-64".into(),
        183 => "AArch64".into(),
        258 => "LoongArch".into(),
        _ => m.to_string(),
    }
}

/// Refuse an output the runtime could not create (it would run the program untraced).
fn check_output(given: &Path, out: &Path) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!(
            "record: {}: is a directory (-o takes a file)",
            given.display()
        );
    }
    if let Some(dir) = out.parent() {
        if !dir.is_dir() {
            bail!(
                "record: {}: no such directory {}",
                given.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Does the program carry the padtrim runtime? Its descriptor (magic and version, as the
/// runtime links it in and `padtrim rewrite` keeps them) is in the program's data; symbols
/// are not needed, so a stripped program is recognized too.
fn carries_runtime(bytes: &[u8]) -> bool {
    use padtrim_runtime::descriptor::{DESCRIPTOR_MAGIC, DESCRIPTOR_VERSION};
    let mut pattern = DESCRIPTOR_MAGIC.to_vec();
    pattern.extend_from_slice(&DESCRIPTOR_VERSION.to_le_bytes());
    bytes.windows(pattern.len()).any(|w| w == pattern)
}

/// The shared runtime to preload into the program, or `None` when the runtime linked into it
/// traces it (it carries one: it owns the trace; a static program cannot preload anything).
/// A dynamically linked program without the runtime must have a slot table.
fn preload_for(
    args: &RecordArgs,
    name: &str,
    bytes: &[u8],
    carries_runtime: bool,
) -> anyhow::Result<Option<PathBuf>> {
    use padtrim_runtime::module::{segments, ModuleFile};
    const PT_INTERP: u32 = 3;
    let file = ModuleFile::parse(bytes);
    let dynamic = file
        .and_then(|f| f.program_headers())
        .is_some_and(|ph| segments(ph).any(|s| s.kind == PT_INTERP));
    if carries_runtime || !dynamic {
        return Ok(None);
    }
    if file.and_then(|f| f.slot_table()).is_none() {
        bail!(
            "record: {name}: no __mcount_loc slot table, so nothing to trace: rewrite it with \
             `padtrim rewrite --slot 4` (build it with -fpatchable-function-entry and -Wl,-q; \
             a program with too few functions may leave no room for the table, which \
             `padtrim rewrite --json` reports as \"table\": false), or link it with the \
             padtrim runtime"
        );
    }
    let lib = match &args.preload {
        Some(lib) => lib.clone(),
        None => built_shared_runtime()?,
    };
    if !lib.is_file() {
        bail!("record: --preload {}: no such file", lib.display());
    }
    Ok(Some(lib))
}

/// The shared runtime built by scripts/runtime-lib of the source tree padtrim comes from.
fn built_shared_runtime() -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/runtime-lib");
    let advice = "build it with scripts/runtime-lib --shared and pass it with --preload FILE";
    if !script.is_file() {
        bail!(
            "record: cannot find the padtrim runtime's shared library ({} is gone); {advice}",
            script.display()
        );
    }
    let out = Command::new(&script)
        .arg("--shared")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("record: cannot run {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(lib) if out.status.success() => Ok(PathBuf::from(lib.trim())),
        _ => bail!("record: {} --shared failed; {advice}", script.display()),
    }
}

/// `LD_PRELOAD` for a native run: the runtime first, then what the caller preloads.
fn native_preload(lib: &Path) -> std::ffi::OsString {
    let mut v = lib.as_os_str().to_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

/// qemu-user's arguments setting `LD_PRELOAD` in the guest only (in qemu's own environment it
/// would be the host's loader that tried to preload a riscv64 library).
fn qemu_preload(lib: &Path) -> anyhow::Result<[std::ffi::OsString; 2]> {
    let lib = lib.as_os_str();
    if lib.as_encoded_bytes().contains(&b',') {
        bail!(
            "record: --preload {}: qemu-riscv64 -E cannot pass a path with a comma",
            lib.to_string_lossy()
        );
    }
    let mut env = std::ffi::OsString::from("LD_PRELOAD=");
    env.push(lib);
    Ok(["-E".into(), env])
}

/// Append the identity records to the trace the program wrote. Not to a trace that ends in
/// a torn record (a crash while writing), where they would not start on a record boundary.
fn add_identity(trace: &Path, identity: &Identity) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(trace)
        .context("cannot open it")?;
    let meta = file.metadata().context("cannot stat it")?;
    if !meta.is_file() {
        return Ok(()); // -o /dev/null, a pipe: nothing to replay later
    }
    let mut head = Vec::new();
    (&mut file)
        .take((HEADER_FIXED_SIZE + MAX_PATH + 8) as u64)
        .read_to_end(&mut head)
        .context("cannot read it")?;
    let header_size = TraceFile::parse(&head)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .header_size as u64;
    let torn = meta.len().saturating_sub(header_size) % RECORD_SIZE as u64;
    if torn != 0 {
        bail!("it ends in a torn record of {torn} bytes (the program crashed while writing?)");
    }
    let bytes: Vec<u8> = identity.records().iter().flat_map(|r| r.encode()).collect();
    file.write_all(&bytes).context("cannot write it")?;
    Ok(())
}
