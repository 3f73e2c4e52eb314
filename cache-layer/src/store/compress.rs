//! Compressed entries in the shared tier ([`CacheBuilder::compress_above`](crate::CacheBuilder::compress_above)):
//! an encoded entry whose payload is larger than the threshold is written with format byte 2,
//! its header and tags as they were (Redis's scripts read the deadlines at fixed offsets) and
//! its payload as an LZ4 block after the payload's length (4 bytes, little-endian). Readers
//! accept both forms whatever their own setting, so instances can turn compression on one at a
//! time.

use super::codec::{payload_at, FORMAT_MSGPACK_NAMED, FORMAT_MSGPACK_NAMED_LZ4, MAX_ENCODED};

/// `bytes`, an entry [`codec`](super::codec) encoded, with its payload compressed when that
/// payload is longer than `above` bytes and compressing makes it shorter; otherwise as it was.
pub(crate) fn compressed(bytes: Vec<u8>, above: usize) -> Vec<u8> {
    let Some(at) = payload_at(&bytes) else {
        return bytes;
    };
    let payload = &bytes[at..];
    if bytes[0] != FORMAT_MSGPACK_NAMED || payload.len() <= above {
        return bytes;
    }
    let Ok(length) = u32::try_from(payload.len()) else {
        return bytes;
    };
    let block = lz4_flex::block::compress(payload);
    if block.len() + 4 >= payload.len() {
        return bytes;
    }
    let mut out = Vec::with_capacity(at + 4 + block.len());
    out.extend_from_slice(&bytes[..at]);
    out[0] = FORMAT_MSGPACK_NAMED_LZ4;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&block);
    out
}

/// The payload [`compressed`] wrote: `None` when the bytes are not a block of the length they
/// state, or state more than [`MAX_ENCODED`] (bytes from Redis decide no allocation's size
/// beyond that).
pub(crate) fn decompressed(stored: &[u8]) -> Option<Vec<u8>> {
    let (length, block) = stored.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_le_bytes(*length)).ok()?;
    if length > MAX_ENCODED {
        return None;
    }
    let payload = lz4_flex::block::decompress(block, length).ok()?;
    (payload.len() == length).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::{decode, encode, DecodeError, WallDeadlines};

    const D: WallDeadlines = WallDeadlines {
        fresh_until: 10,
        stale_until: 20,
        expires_at: 30,
    };

    fn json_like(n: usize) -> String {
        (0..n)
            .map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\",\"active\":true}},"))
            .collect()
    }

    #[test]
    fn large_payloads_shrink_and_read_back_with_their_tags() {
        let value = json_like(2_000);
        let plain = encode(&value, D, &["users".into(), "org:1".into()]).unwrap();
        let small = compressed(plain.clone(), 1024);
        assert_eq!(small[0], FORMAT_MSGPACK_NAMED_LZ4);
        assert!(
            small.len() * 3 < plain.len(),
            "{} vs {}",
            small.len(),
            plain.len()
        );
        assert_eq!(
            small[1..35],
            plain[1..35],
            "the header (deadlines) stays in place"
        );
        let decoded = decode::<String>(&small).unwrap();
        assert_eq!(decoded.value, value);
        let tags: Vec<Box<str>> = vec!["users".into(), "org:1".into()];
        assert_eq!(decoded.tags, tags);
    }

    #[test]
    fn small_or_incompressible_payloads_stay_as_they_are() {
        let plain = encode(&json_like(10), D, &[]).unwrap();
        assert_eq!(compressed(plain.clone(), 1 << 20), plain);
        let noise: Vec<u64> = (0..4096u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
            .collect();
        let plain = encode(&noise, D, &[]).unwrap();
        assert_eq!(compressed(plain.clone(), 16), plain);
        assert_eq!(
            compressed(vec![1, 2, 3], 0),
            [1, 2, 3],
            "not an entry: left alone"
        );
    }

    #[test]
    fn hostile_compressed_bytes_are_refused_without_allocating_what_they_claim() {
        assert_eq!(decompressed(&[]), None);
        assert_eq!(decompressed(&u32::MAX.to_le_bytes()), None);
        let mut claims_too_much = (MAX_ENCODED as u32 + 1).to_le_bytes().to_vec();
        claims_too_much.extend_from_slice(&[0x10, b'a']);
        assert_eq!(decompressed(&claims_too_much), None);

        let plain = encode(&json_like(500), D, &[]).unwrap();
        let small = compressed(plain, 0);
        for cut in [36, 40, small.len() / 2, small.len() - 1] {
            assert!(decode::<String>(&small[..cut]).is_err(), "cut at {cut}");
        }
        // A length that does not match the block.
        let at = payload_at(&small).unwrap();
        let mut lying = small.clone();
        lying[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(decode::<String>(&lying).err(), Some(DecodeError::Payload));
        let mut flipped = small;
        let last = flipped.len() - 1;
        flipped[last] ^= 0xFF;
        assert!(decode::<String>(&flipped).is_err());
    }
}
