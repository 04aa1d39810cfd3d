//! A segment file being written: blocking I/O, run off the reactor by the recorder.
//!
//! Each part is written with `write_vectored` straight from the stream's pages (the header
//! the fragmenter made, then the payload slices), so no sample is copied on its way to disk.
//! The file is created with `create_new` (never overwriting a recording), its folder is
//! fsynced so the new name survives a power cut, and the file is fsynced at least every
//! `sync_s`. A write that fails leaves the file cut back to its last whole part.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fmp4::Part;

#[derive(Debug)]
pub struct SegmentFile {
    file: File,
    path: PathBuf,
    /// Bytes written and whole (a failed write is cut back to this).
    len: u64,
    parts: u64,
    sync_every: Duration,
    last_sync: Instant,
    unsynced: bool,
}

impl SegmentFile {
    /// Creates `<dir>/<stem>.mp4` (or, if that name exists, `<stem>-1.mp4`, ...) holding
    /// `init`.
    pub fn create(
        dir: &Path,
        stem: &str,
        init: &[u8],
        sync_every: Duration,
    ) -> io::Result<SegmentFile> {
        std::fs::create_dir_all(dir)?;
        let mut n = 0;
        let (file, path) = loop {
            let name = if n == 0 {
                format!("{stem}.mp4")
            } else {
                format!("{stem}-{n}.mp4")
            };
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let mut seg = SegmentFile {
            file,
            path,
            len: 0,
            parts: 0,
            sync_every,
            last_sync: Instant::now(),
            unsynced: true,
        };
        if let Err(e) = seg.write_all(&[IoSlice::new(init)]) {
            // Not a recording yet: leave nothing behind.
            let _ = std::fs::remove_file(&seg.path);
            return Err(e);
        }
        // The folder entry, so that the file is found after a power cut.
        File::open(dir)?.sync_all()?;
        Ok(seg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> u64 {
        self.parts
    }

    /// Appends a part; fsyncs if the last fsync is `sync_s` old.
    pub fn write_part(&mut self, part: &Part) -> io::Result<()> {
        let mut slices = Vec::with_capacity(part.payloads.len() * 2 + 1);
        slices.push(IoSlice::new(&part.header));
        for p in &part.payloads {
            p.io_slices(&mut slices);
        }
        self.write_all(&slices)?;
        self.parts += 1;
        self.unsynced = true;
        if self.last_sync.elapsed() >= self.sync_every {
            self.sync()?;
        }
        Ok(())
    }

    fn write_all(&mut self, slices: &[IoSlice<'_>]) -> io::Result<()> {
        let total: u64 = slices.iter().map(|s| s.len() as u64).sum();
        let mut owned: Vec<IoSlice<'_>> = slices.to_vec();
        let mut rest = &mut owned[..];
        let mut written = 0u64;
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => {
                    return self.failed(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "disk took no bytes",
                    ));
                }
                Ok(n) => {
                    written += n as u64;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.failed(e),
            }
        }
        debug_assert_eq!(written, total);
        self.len += total;
        Ok(())
    }

    /// Cuts a partly written part off, so the file ends at a whole part, and gives `e` back.
    fn failed(&mut self, e: io::Error) -> io::Result<()> {
        if let Err(cut) = self.file.set_len(self.len) {
            tracing::warn!(path = %self.path.display(), error = %cut, "cannot cut a failed write off a segment; recovery will at the next start");
        }
        Err(e)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs and closes the file; gives its path and length.
    pub fn finish(mut self) -> io::Result<(PathBuf, u64)> {
        self.sync()?;
        Ok((self.path, self.len))
    }
}
