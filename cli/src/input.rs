//! Opening input files: memory-mapped, with errors that name the file.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memmap2::Mmap;

/// A memory-mapped input file.
pub struct Input {
    /// The path as given.
    pub path: PathBuf,
    map: Option<Mmap>,
    /// (device, inode) of the opened file: the same file under any name or link.
    id: (u64, u64),
}

impl Input {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Input> {
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?;
        if !meta.is_file() {
            anyhow::bail!("{}: not a regular file", path.display());
        }
        let len = meta.len();
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
            id: (meta.dev(), meta.ino()),
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// True if `other` names this very file: the same path, a symlink to it, or a hard
    /// link (same device and inode). False if `other` does not exist.
    pub fn is_same_file(&self, other: &Path) -> bool {
        std::fs::metadata(other).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
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
