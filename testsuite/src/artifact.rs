//! What one built corpus file is, and how to run or re-link it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The ELF type of a corpus artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A relocatable object (`-c`); addresses in it are section offsets.
    Object,
    /// A linked program (PIE, non-PIE or static; see [`Linkage`]).
    Executable,
    /// A shared library (`-shared -fPIC`).
    SharedLib,
}

/// How an artifact was (or, for an object, is meant to be) linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Linkage {
    /// Position-independent executable (the Debian default).
    Pie,
    /// `-fno-pie -no-pie`: absolute addresses, fixed load address.
    NoPie,
    /// `-static`: no dynamic loader, libc linked in (libc itself has no pads).
    Static,
    /// `-shared -fPIC`.
    Shared,
    /// Not linkable on this machine (RV32: Debian ships no rv32 C library).
    None,
}

/// Which compiler driver built an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compiler {
    /// `riscv64-linux-gnu-gcc` (C).
    Gcc,
    /// `riscv64-linux-gnu-g++` (C++; GCC 12 + ld 2.40 cannot link COMDAT functions with pads, so only single-TU programs).
    Gxx,
    /// `clang++ --target=riscv64-linux-gnu` (C++ with COMDAT pads that GNU ld can link).
    Clangxx,
}

impl Compiler {
    /// The argv prefix that invokes this driver (program plus any target option).
    pub fn argv(self) -> &'static [&'static str] {
        match self {
            Compiler::Gcc => &["riscv64-linux-gnu-gcc"],
            Compiler::Gxx => &["riscv64-linux-gnu-g++"],
            Compiler::Clangxx => &["clang++", "--target=riscv64-linux-gnu"],
        }
    }

    /// A `Command` for this driver with its fixed leading arguments.
    pub fn command(self) -> Command {
        let argv = self.argv();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

/// One file of the test corpus, built at test time from `testsuite/corpus/`.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Unique name, e.g. `basic-rv64gc-p8-O2-pie` or `cxx-gxx-rv64gc-p8_2-O2-nopie-ffs-obj`.
    pub name: String,
    /// The source program (`basic`, `many`, `control`, `threads`, `cxx`, `use_shared`,
    /// `shared_lib`, `portable`); every runnable build of one program prints the same output.
    pub program: String,
    /// The built file (inside `<target dir>/padtrim-corpus/`).
    pub path: PathBuf,
    /// Object, executable or shared library.
    pub kind: ArtifactKind,
    /// How it is (or is to be) linked.
    pub linkage: Linkage,
    /// The driver that built it.
    pub compiler: Compiler,
    /// The source files compiled into it.
    pub sources: Vec<PathBuf>,
    /// Every flag given to the driver (compile and link; no input or output names).
    pub flags: Vec<String>,
    /// The `-march=` value, e.g. `rv64gc`.
    pub march: String,
    /// Code compiled with the C extension, so pads are `c.nop` (2 bytes) rather than `nop`
    /// (4 bytes). Not the same as the ELF's EF_RISCV_RVC flag: an rv64g program linked with
    /// Debian's rv64gc crt files still has that flag set.
    pub rvc: bool,
    /// N of `-fpatchable-function-entry=N[,M]`: nops per function, including `pre_nops`.
    pub pad_nops: u32,
    /// M of `-fpatchable-function-entry=N,M`: nops placed before the function symbol.
    pub pre_nops: u32,
    /// `-O0`, `-O2`, ...
    pub opt_level: String,
    /// Built with `-ffunction-sections` (one text section and one table section per function).
    pub function_sections: bool,
    /// ELF pointer size in bytes: 8 for ELF64, 4 for ELF32 (the rv32 objects).
    pub pointer_size: u32,
    /// Can run under `qemu-riscv64` (linked rv64 programs).
    pub runnable: bool,
    /// Exit status the program returns when it runs correctly (3 for every corpus program).
    pub expected_status: Option<i32>,
    /// Directory holding the corpus shared library this program needs at run time
    /// (`LD_LIBRARY_PATH`, passed to qemu with `-E`); `None` if it needs none.
    pub lib_dir: Option<PathBuf>,
    /// For objects: driver flags that link this object into a runnable program (the object
    /// and `-o OUT` are added by [`Artifact::link_command`]); empty if it cannot be linked.
    pub link_args: Vec<String>,
}

impl Artifact {
    /// Bytes per pad nop: 2 (`c.nop`) with RVC, else 4 (`nop`).
    pub fn nop_bytes(&self) -> u32 {
        if self.rvc {
            2
        } else {
            4
        }
    }

    /// Pad size in bytes per function (`pad_nops * nop_bytes`).
    pub fn pad_bytes(&self) -> u32 {
        self.pad_nops * self.nop_bytes()
    }

    /// The `nop_kind` padtrim should report for this artifact's pads.
    pub fn nop_kind(&self) -> &'static str {
        if self.rvc {
            "c.nop"
        } else {
            "nop"
        }
    }

    /// Environment a run of this program needs (`LD_LIBRARY_PATH` for the shared library).
    pub fn run_env(&self) -> Vec<(String, String)> {
        match &self.lib_dir {
            Some(dir) => vec![("LD_LIBRARY_PATH".to_string(), dir.display().to_string())],
            None => Vec::new(),
        }
    }

    /// Run this program under qemu with `args` (panics if it is not runnable).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_file(&self.path, args)
    }

    /// Run another file (e.g. a rewritten copy of this program) under qemu with the
    /// environment this program needs.
    pub fn run_file(&self, path: &Path, args: &[&str]) -> Output {
        assert!(
            self.runnable,
            "{} is not runnable under qemu-riscv64",
            self.name
        );
        let env = self.run_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        crate::run_qemu(path, args, &env)
    }

    /// For objects: the command that links `object` (this file or a rewritten copy) into
    /// the program `out`, with the same flags this object was compiled with. `None` if the
    /// object cannot be linked here (rv32) or this is not an object.
    pub fn link_command(&self, object: &Path, out: &Path) -> Option<Command> {
        if self.kind != ArtifactKind::Object || self.link_args.is_empty() {
            return None;
        }
        let mut cmd = self.compiler.command();
        cmd.arg(object).args(&self.link_args).arg("-o").arg(out);
        Some(cmd)
    }
}
