//! `padtrim`: report, check, rewrite and verify RISC-V patchable function entries, and record
//! and replay traces of programs that carry the padtrim runtime.
//!
//! Exit status: 0 success, 1 a failed check, 2 unusable input, 3 internal error (a rewrite
//! failed its own verification: a bug in padtrim, not in the input; nothing was written).

mod input;
mod report_cmd;
mod rewrite_cmd;
mod trace;
mod verify_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit statuses, for `--help`.
const EXIT_STATUS: &str = "Exit status:
  0  success
  1  a failed check
  2  unusable input (the file and the reason on stderr)
  3  internal error: a rewrite failed its own verification (a bug in padtrim, not in the \
input; nothing was written)";

/// Trim RISC-V patchable function entries to 4-byte slots, and trace through them.
#[derive(Parser)]
#[command(name = "padtrim", version, about, long_about = None, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report pads: sizes, histogram, per section and function, projected savings.
    Report(report_cmd::ReportArgs),
    /// CI gate: fail (exit 1) when pads grow past a limit or a baseline, or sites go missing.
    Check(report_cmd::CheckArgs),
    /// Compact every pad to a slot, move the code, fix every reference, emit __mcount_loc.
    Rewrite(rewrite_cmd::RewriteArgs),
    /// Prove a rewrite right: every instruction, reference, symbol and table maps (exit 1 if not).
    Verify(verify_cmd::VerifyArgs),
    /// Run a RISC-V program linked with the padtrim runtime, or rewritten and traced by the
    /// preloaded runtime, and record a trace.
    ///
    /// PROGRAM must be a riscv64 ELF program: a missing file, a directory, a file that is not
    /// ELF or an ELF file for another machine is refused (exit 2) before anything runs, and so
    /// is a dynamically linked program with neither the runtime nor a slot table. The
    /// trace also gets the program's identity (build-id, size, a hash of its code), which
    /// `padtrim replay` checks against the program it takes symbols from.
    ///
    /// Exit status: the program's own, so `padtrim record` can stand in for the program in
    /// scripts; 128+N when signal N killed it (as shells report it); 2 when padtrim could not
    /// run it, or when it wrote no trace (a static program not linked with the padtrim
    /// runtime), whatever its own status was (which the message then tells).
    Record(trace::RecordArgs),
    /// Print a recorded trace (text, chrome, folded, uftrace, or --summary).
    Replay(trace::ReplayArgs),
}

/// How a command ended, mapped to the exit status.
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a check failed (details already printed).
    CheckFailed,
    /// Exit 2: an input was unusable (details already printed; the other inputs were
    /// still reported).
    Unusable,
}
// Exit 2 is any other error (unusable input); exit 3 is a rewrite that failed its own
// verification (`rewrite_cmd::VerificationFailed`).

/// Dies quietly on a closed pipe (`padtrim report big | head`), as other command-line tools
/// do, instead of panicking in `println!`.
fn default_sigpipe() {
    #[cfg(unix)]
    {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

/// One malloc arena for every thread. glibc gives each thread that allocates its own arena,
/// and memory freed in one is not reused by another: a rewrite's rayon workers kept
/// 35 MB more resident on a 100k-function program (248 -> 212 MB), for no speed.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a malloc tuning call, made before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// `PADTRIM_TIMINGS=1`: the library's phase timings on stderr, one line each.
fn timings_on_stderr() {
    if std::env::var_os("PADTRIM_TIMINGS").is_some() {
        padtrim::timing::set_sink(|name, elapsed| {
            eprintln!("padtrim: {name:<24} {:8.1} ms", elapsed.as_secs_f64() * 1e3)
        });
    }
}

fn main() -> ExitCode {
    one_malloc_arena();
    timings_on_stderr();
    default_sigpipe();
    let cli = Cli::parse();
    if let Command::Record(args) = &cli.command {
        // `record` exits with the traced program's own status (128+N if signal N killed
        // it); its errors, including a program that wrote no trace, exit 2.
        return match trace::record(args) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("padtrim: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.command {
        Command::Report(args) => report_cmd::report(&args),
        Command::Check(args) => report_cmd::check(&args),
        Command::Rewrite(args) => rewrite_cmd::rewrite(&args),
        Command::Verify(args) => verify_cmd::verify(&args),
        Command::Record(_) => unreachable!("handled above"),
        Command::Replay(args) => trace::replay(&args).map(|()| Outcome::Success),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Ok(Outcome::Unusable) => ExitCode::from(2),
        Err(e) if e.is::<rewrite_cmd::VerificationFailed>() => {
            // padtrim's own fault: what happened, and what to send in a bug report.
            eprintln!("padtrim: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            // One line: the file and the reason (anyhow's context chain, joined).
            eprintln!("padtrim: {e:#}");
            ExitCode::from(2)
        }
    }
}
