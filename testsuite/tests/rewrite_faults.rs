//! `padtrim rewrite` when writing the output fails or would hit the input: an unwritable
//! directory, a full disk, the output being the input (same path, a symlink to it, a hard
//! link to it), the output being a directory. Each must exit 2 with one line naming the
//! problem, leave no output or temporary file behind, and leave the input untouched.
//!
//! The unwritable directory and the full disk are small tmpfs mounts (read-only, and a few
//! KiB), which needs root; without it those cases are skipped with a printed reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use padtrim_testsuite::{artifact, rewrite, scratch_dir};

/// A program the rewriter handles (a PIE with 16-byte pads).
const INPUT: &str = "basic-rv64gc-p8-O2-pie";

/// Copies the corpus program into `dir` as `input`, so the test owns the file it checks.
fn input_copy(dir: &Path) -> PathBuf {
    let path = dir.join("input");
    std::fs::copy(&artifact(INPUT).path, &path).expect("copy input");
    path
}

/// Everything an input file is: its bytes and its modification time.
fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).expect("read input");
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("input mtime");
    (bytes, mtime)
}

/// Asserts the failure contract: exit 2, one line on stderr containing `reason`, no panic,
/// input unchanged, and `dir` holding exactly the names in `expected` afterwards (no
/// output, no temporary file).
fn assert_fails_cleanly(input: &Path, output: &Path, reason: &str, dir: &Path, expected: &[&str]) {
    let before = fingerprint(input);
    let out = rewrite(input, output, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!("rewrite {} -o {}", input.display(), output.display());
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    assert_eq!(out.status.code(), Some(2), "{what}: stderr:\n{stderr}");
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "{what}: stderr is not one line:\n{stderr}"
    );
    assert!(
        line.contains(reason),
        "{what}: does not say {reason:?}: {line}"
    );
    assert!(
        fingerprint(input) == before,
        "{what}: the input file changed"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read output dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "{what}: files left in {}", dir.display());
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    /// Mounts a tmpfs with `options` at `path`, or says why it cannot.
    fn tmpfs(path: &Path, options: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o {options} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn the_input_itself_succeeds_first() {
    // The other cases fail on writing, not on the input: the same input rewrites fine.
    let dir = scratch_dir("faults_control");
    let input = input_copy(&dir);
    let out = rewrite(&input, &dir.join("out"), &[]);
    assert!(
        out.status.success(),
        "control rewrite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("out").is_file());
}

#[test]
fn output_directory_unwritable() {
    let dir = scratch_dir("faults_unwritable");
    let input = input_copy(&dir);
    let ro = dir.join("read-only");
    let _mount: Option<Mount> = match Mount::tmpfs(&ro, "ro,size=64k") {
        Ok(m) => Some(m),
        Err(why) => {
            // Not root: a mode-0555 directory is unwritable for everyone else.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
            if std::fs::write(ro.join("probe"), b"x").is_ok() {
                println!(
                    "skipping the unwritable-directory case: {why}, and mode 0555 does not \
                     stop this user"
                );
                return;
            }
            None
        }
    };
    assert_fails_cleanly(&input, &ro.join("out"), "cannot write", &ro, &[]);
}

#[test]
fn disk_full() {
    let dir = scratch_dir("faults_disk_full");
    let input = input_copy(&dir);
    let size = std::fs::metadata(&input).expect("stat input").len();
    let full = dir.join("tiny-fs");
    // 8 KiB: far less than the program, so the write runs out of space midway.
    let _mount = match Mount::tmpfs(&full, "size=8k") {
        Ok(m) => m,
        Err(why) => {
            println!("skipping the disk-full case: {why}");
            return;
        }
    };
    assert!(size > 8 * 1024, "input too small to fill the file system");
    assert_fails_cleanly(&input, &full.join("out"), "No space left", &full, &[]);
}

#[test]
fn output_is_the_input() {
    let dir = scratch_dir("faults_same_path");
    let input = input_copy(&dir);
    let reason = "output is the input file";
    assert_fails_cleanly(&input, &input, reason, &dir, &["input"]);
    // The same file by another spelling.
    let dotted = dir.join(".").join("input");
    assert_fails_cleanly(&input, &dotted, reason, &dir, &["input"]);
}

#[test]
fn output_is_a_symlink_to_the_input() {
    let dir = scratch_dir("faults_symlink");
    let input = input_copy(&dir);
    let link = dir.join("link");
    std::os::unix::fs::symlink(&input, &link).expect("symlink");
    assert_fails_cleanly(
        &input,
        &link,
        "output is the input file",
        &dir,
        &["input", "link"],
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link still there")
            .file_type()
            .is_symlink(),
        "the symlink was replaced"
    );
    // And the other way round: the input given through the link, the output its target.
    assert_fails_cleanly(
        &link,
        &input,
        "output is the input file",
        &dir,
        &["input", "link"],
    );
}

#[test]
fn output_is_a_hard_link_to_the_input() {
    let dir = scratch_dir("faults_hard_link");
    let input = input_copy(&dir);
    let link = dir.join("hard-link");
    std::fs::hard_link(&input, &link).expect("hard link");
    assert_fails_cleanly(
        &input,
        &link,
        "output is the input file",
        &dir,
        &["hard-link", "input"],
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&link).expect("stat link").ino(),
        std::fs::metadata(&input).expect("stat input").ino(),
        "the hard link was replaced"
    );
}

#[test]
fn output_is_a_directory() {
    let dir = scratch_dir("faults_directory");
    let input = input_copy(&dir);
    let target = dir.join("a-directory");
    std::fs::create_dir(&target).expect("create dir");
    assert_fails_cleanly(
        &input,
        &target,
        "cannot write",
        &dir,
        &["a-directory", "input"],
    );
    assert!(target.is_dir(), "the directory was replaced");
    assert_eq!(
        std::fs::read_dir(&target).expect("read dir").count(),
        0,
        "something was written into the directory"
    );
}
