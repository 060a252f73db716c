//! `padtrim record`: run the program with the runtime's environment settings.

use std::process::Command;

use anyhow::{bail, Context};

use super::RecordArgs;

/// Run the program (under qemu-riscv64 unless the host is riscv64) with PADTRIM_TRACE,
/// PADTRIM_FILTER and PADTRIM_OUT set; returns its exit status (128 + signal if killed).
pub fn record(args: &RecordArgs) -> anyhow::Result<i32> {
    let (program, rest) = match args.command.split_first() {
        Some(x) => x,
        None => {
            bail!("record: no program given (usage: padtrim record [OPTIONS] -- PROGRAM ARGS...)")
        }
    };
    let out = if args.output.is_absolute() {
        args.output.clone()
    } else {
        std::env::current_dir()
            .context("record: cannot read the working directory")?
            .join(&args.output)
    };
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
    // An old trace must not pass for a new one if the program fails before writing.
    let _ = std::fs::remove_file(&out);
    let mut cmd = if std::env::consts::ARCH == "riscv64" {
        let mut c = Command::new(program);
        c.args(rest);
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    } else {
        // qemu-user hands its own environment to the guest. Not `-E`: it splits its value
        // at commas (getsubopt), which would cut a PADTRIM_FILTER list apart.
        let mut c = Command::new(&args.qemu);
        c.arg("-L").arg(&args.sysroot).arg(program).args(rest);
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let status = cmd
        .status()
        .with_context(|| format!("record: cannot run {}", cmd.get_program().to_string_lossy()))?;
    if !out.exists() {
        eprintln!(
            "padtrim: record: {} wrote no trace (is it linked with the padtrim runtime and built with -fpatchable-function-entry?)",
            program
        );
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    })
}
