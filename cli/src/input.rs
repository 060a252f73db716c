//! Opening input files: memory-mapped, with errors that name the file.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memmap2::Mmap;

/// A memory-mapped input file.
pub struct Input {
    /// The path as given.
    pub path: PathBuf,
    map: Option<Mmap>,
}

impl Input {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Input> {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
        if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            anyhow::bail!("{}: not a regular file", path.display());
        }
        // An empty file cannot be mapped; it is simply not an ELF file.
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only and private; padtrim never writes its input,
            // and a concurrent writer would only change the bytes we read, not memory safety
            // of the slices we bounds-check against the length fixed at map time.
            Some(
                unsafe { Mmap::map(&file) }
                    .with_context(|| format!("{}: cannot map", path.display()))?,
            )
        };
        Ok(Input {
            path: path.to_path_buf(),
            map,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The path for messages.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Parses the ELF model, with the file name in any error.
    pub fn elf(&self) -> Result<padtrim::elf::ElfFile<'_>> {
        padtrim::elf::parse(self.bytes()).with_context(|| self.name())
    }
}
