//! Deflating one large file on every core, the way pigz does: the file is cut into chunks of
//! [`CHUNK`] bytes, each compressed on its own with the 32 KiB before it as its dictionary, and
//! ended with a sync flush (the last one with the final block). The chunks' outputs, one after
//! another, are a single deflate stream that any inflater reads. The chunk size is fixed, so the
//! bytes depend on the file and the level only, not on the number of cores.
//!
//! Without it, a file such as litellm's 44.8 MB Rust extension is deflated by one thread (2.7 s
//! at level 9 here) while the other cores may have nothing left to do.

use anyhow::{bail, Context, Result};
use flate2::{Compress, Compression, FlushCompress, Status};

/// The bytes each part of the file has. 1 MiB: with the dictionary carried from the part
/// before, the stream is as small as a whole-file deflate (on litellm's extension at level 9,
/// 1,354 bytes smaller of 17 MB; the unit test allows 0.1 % more).
pub const CHUNK: usize = 1 << 20;

/// Files from this size on are deflated in parts; smaller ones gain nothing from it that the
/// zip step's one-file-per-thread does not already give.
pub const MIN_BYTES: u64 = 4 * CHUNK as u64;

/// Deflate's window: what a chunk may refer back to.
const WINDOW: usize = 32 * 1024;

/// The raw deflate stream of `data` at `level`, its parts compressed by `threads` threads.
pub fn deflate(data: &[u8], level: u32, threads: usize) -> Result<Vec<u8>> {
    let chunks: Vec<(usize, usize)> = (0..data.len().div_ceil(CHUNK).max(1))
        .map(|i| (i * CHUNK, ((i + 1) * CHUNK).min(data.len())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = threads.clamp(1, chunks.len());
    let mut parts: Vec<Option<Result<Vec<u8>>>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(&(start, end)) = chunks.get(i) else {
                            break;
                        };
                        let dictionary = &data[start.saturating_sub(WINDOW)..start];
                        let last = end == data.len();
                        done.push((i, part(&data[start..end], dictionary, last, level)));
                    }
                    done
                })
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(done) => {
                    for (i, p) in done {
                        parts[i] = Some(p);
                    }
                }
                Err(_) => bail!("a deflating thread panicked"),
            }
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&p.context("a part of the file was not deflated")??);
    }
    Ok(out)
}

/// One part: `input` compressed after `dictionary` (the bytes just before it), ended by a sync
/// flush, or by the final block when it is the `last`.
fn part(input: &[u8], dictionary: &[u8], last: bool, level: u32) -> Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary)
            .context("setting the deflate dictionary")?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let read = usize::try_from(c.total_in())?;
        let status = c
            .compress_vec(&input[read..], &mut out, flush)
            .context("deflating")?;
        let all_read = usize::try_from(c.total_in())? == input.len();
        // Done when the stream ended, or (a sync flush) when all input is in and the flush
        // left room in the buffer, which means it was written whole.
        if status == Status::StreamEnd || (!last && all_read && out.len() < out.capacity()) {
            return Ok(out);
        }
    }
}

/// A zip holding one file, `entry`, whose raw deflate stream is `deflated`: the form the zip
/// step's entries take (see `cache::zipentry`), with the fields the zip library writes for a
/// file of this `mode`, the zip's fixed time, and no extra fields.
pub fn one_entry_zip(deflated: &[u8], crc32: u32, size: u32, mode: u32) -> Result<Vec<u8>> {
    let name = b"entry";
    let compressed = u32::try_from(deflated.len())
        .context("a deflated file of 4 GiB or more needs zip64, which parts do not write")?;
    // 1980-01-01 00:00:00, zip's earliest time, as `zip::DateTime::default()`.
    let (time, date): (u16, u16) = (0, (1 << 5) | 1);
    let version: u16 = 20;
    let mut out = Vec::with_capacity(deflated.len() + 128);
    // Local file header.
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    for v in [version, 0, 8, time, date] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc32, compressed, size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(deflated);
    // Central directory: made on Unix (3), so the external attributes carry the mode.
    let central = out.len();
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    for v in [(3 << 8) | version, version, 0, 8, time, date] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc32, compressed, size] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [name.len() as u16, 0, 0, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let attributes = (0o100_000 | (mode & 0o7777)) << 16;
    out.extend_from_slice(&attributes.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name);
    let central_size = u32::try_from(out.len() - central)?;
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&u32::try_from(central)?.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

/// The one-entry zip of `data` (see [`one_entry_zip`]), deflated in parts at `level`.
pub fn one_entry(data: &[u8], level: u32, mode: u32) -> Result<Vec<u8>> {
    let threads = crate::util::worker_threads();
    let deflated = deflate(data, level, threads)?;
    let size = u32::try_from(data.len())
        .context("a file of 4 GiB or more needs zip64, which parts do not write")?;
    one_entry_zip(&deflated, crc32fast::hash(data), size, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read, Write};

    /// Bytes that compress somewhat, like code: repeated words with a varying counter.
    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        let mut i = 0u64;
        while v.len() < len {
            let _ = writeln!(v, "def f{}(x): return x * {} + {}", i % 977, i, i * i % 31);
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn parts_make_one_stream_whatever_the_number_of_threads() {
        let data = sample(3 * CHUNK + 12_345);
        let one = deflate(&data, 9, 1).unwrap();
        for threads in [2, 3, 8] {
            assert_eq!(
                deflate(&data, 9, threads).unwrap(),
                one,
                "{threads} threads"
            );
        }
        assert_eq!(inflate(&one), data);
        let mut whole = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(9));
        whole.write_all(&data).unwrap();
        let whole = whole.finish().unwrap();
        assert!(
            one.len() as f64 <= whole.len() as f64 * 1.001 + 64.0,
            "parts {} bytes, whole {} bytes",
            one.len(),
            whole.len()
        );
        for edge in [0, 1, CHUNK, 2 * CHUNK] {
            let data = sample(edge);
            assert_eq!(
                inflate(&deflate(&data, 9, 2).unwrap()),
                data,
                "{edge} bytes"
            );
        }
    }

    #[test]
    fn a_one_part_entry_is_the_zip_librarys_own_bytes() {
        // One part is a plain deflate, so the hand-written headers can be compared with the
        // zip library's whole one-entry zip, byte for byte.
        let data = sample(100_000);
        for mode in [0o644, 0o755] {
            let options = zip::write::SimpleFileOptions::default()
                .last_modified_time(zip::DateTime::default())
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(9))
                .unix_permissions(mode);
            let prepared = zip::PreparedZipFile::from_data("entry", options, &data).unwrap();
            let mut theirs = zip::ZipWriter::new(Cursor::new(Vec::new()));
            theirs.add_prepared_file(prepared).unwrap();
            let theirs = theirs.finish().unwrap().into_inner();
            assert_eq!(one_entry(&data, 9, mode).unwrap(), theirs, "mode {mode:o}");
        }
    }

    #[test]
    fn a_many_part_entry_reads_back_with_its_mode() {
        let data = sample(2 * CHUNK + 1);
        let one = one_entry(&data, 9, 0o755).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(&one)).unwrap();
        let mut file = archive.by_index(0).unwrap();
        assert_eq!(file.unix_mode().map(|m| m & 0o777), Some(0o755));
        assert_eq!(file.compression(), zip::CompressionMethod::Deflated);
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert!(back == data, "the entry's bytes differ from the file's");
    }
}
