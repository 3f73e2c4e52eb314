//! LZ4 blocks for the shared tier's compressed entries
//! ([`CacheBuilder::compress_above`](crate::CacheBuilder::compress_above)): a payload as its
//! length (4 bytes, little-endian) then one LZ4 block, and back. Which entries are compressed,
//! and how the format byte says so, is the entry layout's (`codec.rs`).

/// `payload` as a length and an LZ4 block, when that is shorter than the payload itself.
pub(crate) fn shrunk(payload: &[u8]) -> Option<Vec<u8>> {
    let length = u32::try_from(payload.len()).ok()?;
    let block = lz4_flex::block::compress(payload);
    if block.len() + 4 >= payload.len() {
        return None;
    }
    let mut out = Vec::with_capacity(4 + block.len());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&block);
    Some(out)
}

/// The payload [`shrunk`] wrote: `None` when the bytes are not a block of the length they
/// state, or state more than `limit` (bytes from Redis decide no allocation's size beyond it).
pub(crate) fn expanded(stored: &[u8], limit: usize) -> Option<Vec<u8>> {
    let (length, block) = stored.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_le_bytes(*length)).ok()?;
    if length > limit {
        return None;
    }
    let payload = lz4_flex::block::decompress(block, length).ok()?;
    (payload.len() == length).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_only_when_shorter() {
        let text = "{\"id\":1,\"name\":\"user\"},".repeat(200);
        let block = shrunk(text.as_bytes()).unwrap();
        assert!(block.len() * 4 < text.len());
        assert_eq!(expanded(&block, 1 << 20).unwrap(), text.as_bytes());
        assert_eq!(shrunk(b"short"), None);
    }

    #[test]
    fn hostile_blocks_are_refused_without_allocating_what_they_claim() {
        assert_eq!(expanded(&[], 1 << 20), None);
        assert_eq!(expanded(&u32::MAX.to_le_bytes(), 1 << 20), None);
        let mut claims_too_much = (1u32 << 21).to_le_bytes().to_vec();
        claims_too_much.extend_from_slice(&[0x10, b'a']);
        assert_eq!(expanded(&claims_too_much, 1 << 20), None);
        let block = shrunk("abcd".repeat(100).as_bytes()).unwrap();
        let mut lying = block.clone();
        lying[..4].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(expanded(&lying, 1 << 20), None);
        assert_eq!(expanded(&block[..block.len() - 1], 1 << 20), None);
    }
}
