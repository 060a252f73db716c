//! `padtrim record` and `padtrim replay`: run a program with the padtrim runtime tracing it,
//! and turn the binary trace into text (ftrace function_graph style), Chrome trace-event
//! JSON, folded stacks, or a per-function summary.

mod identity;
mod model;
mod record;
mod render;
mod uftrace;

use std::path::PathBuf;

pub use record::record;

/// Arguments of `padtrim record`.
#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Only trace functions matching these globs (comma list; `*`, `?`; `!glob` excludes).
    #[arg(long, value_name = "GLOBS")]
    pub filter: Option<String>,
    /// Record exits too (function graph with durations), not only entries.
    #[arg(long)]
    pub graph: bool,
    /// Record integer arguments and return values of the functions named: `;`-separated
    /// rules `GLOBS@FIELDS`, GLOBS as for --filter, FIELDS a comma list of arg1..arg8 (the
    /// registers a0..a7 at entry), args (all eight) and retval (a0 at return; needs --graph),
    /// e.g. `fib@arg1,retval;str*,!strlen@arg1,arg2`. Default: PADTRIM_ARGS.
    #[arg(long, value_name = "SPEC")]
    pub args: Option<String>,
    /// Trace file to write (default padtrim.trace; with --uftrace, none is kept unless -o
    /// is given).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the trace as a uftrace data directory, for `uftrace replay -d DIR`,
    /// `uftrace report -d DIR` and the other uftrace commands.
    #[arg(long, value_name = "DIR")]
    pub uftrace: Option<PathBuf>,
    /// Emulator used when the host is not riscv64.
    #[arg(long, value_name = "PATH", default_value = "qemu-riscv64")]
    pub qemu: String,
    /// Sysroot handed to the emulator (`qemu -L`).
    #[arg(long, value_name = "DIR", default_value = "/usr/riscv64-linux-gnu")]
    pub sysroot: PathBuf,
    /// The padtrim runtime built as a shared library (`scripts/runtime-lib --shared`),
    /// preloaded into a dynamically linked program that is not linked with the runtime
    /// (default: built by scripts/runtime-lib of the source tree padtrim was built from).
    #[arg(long, value_name = "FILE")]
    pub preload: Option<PathBuf>,
    /// The program and its arguments, after `--`: a riscv64 ELF rewritten by
    /// `padtrim rewrite --slot 4` (it and its rewritten libraries are traced by the preloaded
    /// runtime), or linked with the padtrim runtime (a static program must be). A bare name is
    /// a file in the working directory (PATH is not searched).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<String>,
}

/// Output formats of `padtrim replay`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Indented call graph per thread with durations in microseconds (like ftrace's function_graph).
    Text,
    /// Chrome trace-event JSON (opens in Perfetto / chrome://tracing).
    Chrome,
    /// `a;b;c weight` lines for flamegraph.pl / inferno (weight: ns of self time, or calls).
    Folded,
    /// A uftrace data directory (needs -o DIR), for `uftrace replay/report/graph/info/dump -d DIR`.
    Uftrace,
}

/// Arguments of `padtrim replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Trace file written by `padtrim record` (or a program run with PADTRIM_TRACE set).
    #[arg(value_name = "TRACE")]
    pub trace: PathBuf,
    /// The traced program, for symbols (default: the path stored in the trace). A trace
    /// made by `padtrim record` knows the program's build-id and code: another program is
    /// refused (exit 2) unless --force is given.
    #[arg(long, value_name = "PROGRAM")]
    pub elf: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Print per-function calls, total and self time instead of the events.
    #[arg(long)]
    pub summary: bool,
    /// Write to this file instead of standard output; with --format uftrace, the data
    /// directory to write (created if missing).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replay even with a program that is not the traced one (a warning instead of exit 2;
    /// function names will likely be wrong).
    #[arg(long)]
    pub force: bool,
}

/// Decode a trace and print it in the requested form on stdout (or into `--output`).
pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if args.format == Format::Uftrace {
        if args.summary {
            anyhow::bail!("replay: --summary prints a table; it does not go with --format uftrace");
        }
        let Some(dir) = &args.output else {
            anyhow::bail!("replay: --format uftrace writes a directory: give it with -o DIR");
        };
        uftrace::check_dir(dir)?;
        let trace = model::Trace::load(&args.trace, args.elf.as_deref(), args.force)?;
        return uftrace::export(&trace, dir, &uftrace::RunInfo::default());
    }
    let trace = model::Trace::load(&args.trace, args.elf.as_deref(), args.force)?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("{}: cannot create", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    if args.summary {
        render::summary(&trace, &mut out)?;
    } else {
        match args.format {
            Format::Text => render::text(&trace, &mut out)?,
            Format::Chrome => render::chrome(&trace, &mut out)?,
            Format::Folded => render::folded(&trace, &mut out)?,
            Format::Uftrace => unreachable!("handled above"),
        }
    }
    out.flush()?;
    Ok(())
}
