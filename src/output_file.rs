//! Output files written whole or not at all. A command writes beside its target and renames
//! the file into place once everything is written, so a failure part-way leaves no partial
//! file that could pass for an export, and never clobbers a good one from an earlier run.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// A file being written to `target`, in `target.partial` until [`OutputFile::finish`].
pub struct OutputFile {
    target: PathBuf,
    partial: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl OutputFile {
    /// Starts writing `target` (the file appears only when finished).
    pub fn create(target: &Path) -> Result<Self> {
        let mut partial = target.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file =
            File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self {
            target: target.to_owned(),
            partial,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Where to write.
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer
            .as_mut()
            .unwrap_or_else(|| unreachable!("the writer is taken only by finish"))
    }

    /// Flushes the file to disk and moves it into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer
                .flush()
                .with_context(|| format!("writing {}", self.partial.display()))?;
            writer
                .get_ref()
                .sync_all()
                .with_context(|| format!("writing {}", self.partial.display()))?;
        }
        std::fs::rename(&self.partial, &self.target).with_context(|| {
            format!(
                "moving {} to {}",
                self.partial.display(),
                self.target.display()
            )
        })
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        // Not finished (an error, or a panic): what was written is not an output.
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_target_appears_only_when_finished_and_a_dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("events.csv");
        std::fs::write(&target, "an earlier, good export").unwrap();

        let mut failed = OutputFile::create(&target).unwrap();
        failed.writer().write_all(b"half of").unwrap();
        drop(failed);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "an earlier, good export"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut done = OutputFile::create(&target).unwrap();
        done.writer().write_all(b"all of it").unwrap();
        done.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "all of it");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
