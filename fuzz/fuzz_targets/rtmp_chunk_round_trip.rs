//! Our chunk writer into our chunk reader: every message comes back with the same csid,
//! timestamp (including extended and wrapping ones), type, stream id and payload, whatever the
//! chunk size changes and however the output is split into partial writes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moment::pages::{PagePool, PoolConfig};
use moment::rtmp::{ChunkReader, ChunkWriter, MessageHeader, Payload, ReaderLimits};

fuzz_target!(|data: &[u8]| {
    let pool = PagePool::new(PoolConfig::default());
    let mut pages = pool.writer("fuzz", 1 << 30);
    let mut w = ChunkWriter::new();
    let mut expected = Vec::new();
    for rec in data.chunks_exact(9) {
        let csid = [2u32, 3, 6, 7, 64, 319, 320, 65599][rec[0] as usize % 8];
        let ts = match rec[1] % 4 {
            0 => u32::from_be_bytes([rec[2], rec[3], rec[4], rec[5]]),
            1 => 0xFF_FF00 + rec[2] as u32,
            2 => u32::MAX - rec[2] as u32,
            _ => rec[2] as u32 * 40,
        };
        let len = u16::from_be_bytes([rec[6], rec[7]]) as usize % 5000;
        let type_id = 8 + rec[8] % 2;
        if rec[8] > 240 {
            let size = (u16::from_be_bytes([rec[6], rec[7]]) as u32).max(1);
            let h = MessageHeader {
                csid: 2,
                timestamp: 0,
                type_id: 1,
                stream_id: 0,
            };
            w.queue(h, Payload::Inline(&size.to_be_bytes())).unwrap();
            w.set_chunk_size(size);
            expected.push((2, 0, 1, 0, size.to_be_bytes().to_vec()));
            continue;
        }
        let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ rec[8]).collect();
        let stream_id = (rec[1] >> 4) as u32;
        let h = MessageHeader {
            csid,
            timestamp: ts,
            type_id,
            stream_id,
        };
        if rec[1] & 8 != 0 {
            let m = pages.write(&[&payload]).unwrap();
            w.queue(h, Payload::Shared(&m)).unwrap();
        } else {
            w.queue(h, Payload::Inline(&payload)).unwrap();
        }
        expected.push((csid, ts, type_id, stream_id, payload));
    }
    // Drain in uneven partial writes.
    let mut bytes = Vec::new();
    let mut step = data.first().copied().unwrap_or(1) as usize + 1;
    while w.pending_bytes() > 0 {
        let mut slices = Vec::new();
        w.io_slices(&mut slices);
        let mut take = step.min(w.pending_bytes());
        let n = take;
        for s in &slices {
            let t = take.min(s.len());
            bytes.extend_from_slice(&s[..t]);
            take -= t;
            if take == 0 {
                break;
            }
        }
        drop(slices);
        w.advance(n);
        step = step * 7 % 10_000 + 1;
    }
    let limits = ReaderLimits {
        max_message_len: 1 << 24,
        max_chunk_streams: 16,
        max_partial_bytes: 1 << 26,
    };
    let mut r = ChunkReader::new(limits);
    let mut input = &bytes[..];
    let mut got = Vec::new();
    while let Some(m) = r.read(&mut input).unwrap() {
        if m.type_id == 1 {
            r.set_chunk_size(u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
                .unwrap();
        }
        got.push((
            m.csid,
            m.timestamp,
            m.type_id,
            m.stream_id,
            m.payload.to_vec(),
        ));
    }
    assert!(input.is_empty());
    assert_eq!(got, expected);
});
