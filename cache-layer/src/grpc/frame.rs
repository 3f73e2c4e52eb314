//! The message of a unary gRPC request: one length-prefixed frame (a compressed flag, a
//! 4-byte big-endian length, the bytes), decompressed per `grpc-encoding` so that a
//! compressed and an uncompressed call for the same message get the same key.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};
use http::HeaderMap;

/// `grpc-encoding`: how compressed frames of the request are compressed.
const GRPC_ENCODING: &str = "grpc-encoding";

/// Why a request's message cannot be keyed (the call then passes through uncached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Not exactly one whole frame: empty, cut short, or several (client streaming).
    NotUnary,
    /// Compressed with an encoding this layer does not decode (identity, gzip, deflate).
    Encoding,
    /// The compressed bytes do not decode, or decode to more than the cap.
    Decompress,
}

impl FrameError {
    /// Short token for a `Cache-Status` `detail` parameter.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FrameError::NotUnary => "not-unary",
            FrameError::Encoding => "encoding",
            FrameError::Decompress => "decompress",
        }
    }
}

/// Whether the request's `grpc-encoding` is one this layer decodes.
pub(crate) fn supported_encoding(headers: &HeaderMap) -> bool {
    match headers.get(GRPC_ENCODING) {
        None => true,
        Some(value) => matches!(value.as_bytes(), b"identity" | b"gzip" | b"deflate"),
    }
}

/// The compressed flag and message of `body` when it is exactly one whole frame.
pub(crate) fn single_frame(body: &[u8]) -> Option<(u8, &[u8])> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return None;
    };
    let len = usize::try_from(u32::from_be_bytes([*a, *b, *c, *d])).unwrap_or(usize::MAX);
    (rest.len() == len).then_some((*flag, rest))
}

/// The decoded message of the one frame in `body`, at most `cap` bytes once decompressed.
pub(crate) fn unary_message<'a>(
    body: &'a [u8],
    headers: &HeaderMap,
    cap: usize,
) -> Result<Cow<'a, [u8]>, FrameError> {
    let (flag, rest) = single_frame(body).ok_or(FrameError::NotUnary)?;
    match flag {
        0 => Ok(Cow::Borrowed(rest)),
        1 => {
            let encoding = headers.get(GRPC_ENCODING).map(|v| v.as_bytes());
            let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
            let mut out = Vec::new();
            let read = match encoding {
                Some(b"gzip") => GzDecoder::new(rest).take(limit).read_to_end(&mut out),
                Some(b"deflate") => ZlibDecoder::new(rest).take(limit).read_to_end(&mut out),
                // The flag says compressed, but with nothing (or identity) to decompress with.
                _ => return Err(FrameError::Encoding),
            };
            match read {
                Ok(n) if n <= cap => Ok(Cow::Owned(out)),
                _ => Err(FrameError::Decompress),
            }
        }
        _ => Err(FrameError::NotUnary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use http::HeaderValue;
    use std::io::Write;

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn encoded(name: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_ENCODING, HeaderValue::from_static(name));
        headers
    }

    #[test]
    fn plain_and_gzip_frames_decode_to_the_same_message() {
        let message = b"course 7".repeat(10);
        let plain = frame(0, &message);
        let packed = frame(1, &gzip(&message));
        let none = HeaderMap::new();
        assert_eq!(unary_message(&plain, &none, 1024).unwrap(), &message[..]);
        assert_eq!(
            unary_message(&packed, &encoded("gzip"), 1024).unwrap(),
            &message[..]
        );
        // A gzip-encoded call may still send a frame uncompressed (flag 0).
        assert_eq!(
            unary_message(&plain, &encoded("gzip"), 1024).unwrap(),
            &message[..]
        );
        assert_eq!(unary_message(&frame(0, b""), &none, 0).unwrap(), &b""[..]);
    }

    #[test]
    fn anything_but_one_whole_frame_is_refused() {
        let none = HeaderMap::new();
        let one = frame(0, b"abc");
        let err = |body: &[u8]| unary_message(body, &none, 1024).unwrap_err();
        assert_eq!(err(b""), FrameError::NotUnary);
        assert_eq!(err(&one[..4]), FrameError::NotUnary);
        assert_eq!(err(&one[..one.len() - 1]), FrameError::NotUnary);
        assert_eq!(
            err(&[one.clone(), one.clone()].concat()),
            FrameError::NotUnary
        );
        assert_eq!(err(&frame(2, b"abc")), FrameError::NotUnary);
        assert_eq!(err(&frame(1, b"abc")), FrameError::Encoding);
    }

    #[test]
    fn bad_or_oversized_compressed_messages_are_refused() {
        let gz = encoded("gzip");
        assert_eq!(
            unary_message(&frame(1, b"not gzip"), &gz, 1024).unwrap_err(),
            FrameError::Decompress
        );
        // A small frame that inflates past the cap (a "zip bomb") is cut off at the cap.
        let bomb = frame(1, &gzip(&[0; 64 * 1024]));
        assert!(bomb.len() < 1024);
        assert_eq!(
            unary_message(&bomb, &gz, 1024).unwrap_err(),
            FrameError::Decompress
        );
        assert!(supported_encoding(&gz));
        assert!(supported_encoding(&HeaderMap::new()));
        assert!(!supported_encoding(&encoded("zstd")));
    }
}
