//! [`KeyArg`] for [`uuid::Uuid`] (feature `uuid`).

use super::arg::KeyArg;
use super::buf::KeyBuf;

/// Its hyphenated lowercase text, `67e55044-10b1-426f-9247-bb680e5fe0c8`: one spelling per
/// id, of characters a key keeps as they are. Its type's name is `uuid::Uuid`.
#[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
impl KeyArg for ::uuid::Uuid {
    #[inline]
    fn write_key(&self, out: &mut KeyBuf) {
        let mut text = ::uuid::Uuid::encode_buffer();
        let text: &str = self.hyphenated().encode_lower(&mut text);
        text.write_key(out);
    }

    fn write_key_type(&self, out: &mut KeyBuf) {
        out.push_str("uuid::Uuid");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_its_hyphenated_lowercase_text() {
        let id = ::uuid::Uuid::from_u128(0x67E5_5044_10B1_426F_9247_BB68_0E5F_E0C8);
        let mut out = KeyBuf::new();
        id.write_key(&mut out);
        assert_eq!(out.as_str(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(
            crate::key::Key::new("t").part(id).as_str(),
            "t:67e55044-10b1-426f-9247-bb680e5fe0c8"
        );
    }
}
