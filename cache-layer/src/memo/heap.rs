//! [`heap_bytes`]: an estimate of the heap data a value holds, for its entry's weight: the
//! bytes its `Serialize` impl writes (text and byte strings at their length, numbers at
//! their width), counted as they are written; nothing is allocated.

use std::fmt;

use serde::ser::{self, Serialize};

/// The bytes `value` writes when serialized; 0 if its `Serialize` impl fails.
pub(super) fn heap_bytes<V: Serialize + ?Sized>(value: &V) -> usize {
    let mut count = Count(0);
    match value.serialize(&mut count) {
        Ok(()) => count.0,
        Err(Never) => 0,
    }
}

/// The running count.
struct Count(usize);

/// A `Serialize` impl's own error ([`ser::Error::custom`]): counting itself never fails.
#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the value could not be serialized")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Never
    }
}

impl Count {
    fn add(&mut self, bytes: usize) -> Result<(), Never> {
        self.0 = self.0.saturating_add(bytes);
        Ok(())
    }
}

/// Numbers and other fixed-width values: their width.
macro_rules! fixed {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Never> {
            self.add(std::mem::size_of::<$ty>())
        })*
    };
}

impl ser::Serializer for &mut Count {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fixed!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
    );

    fn serialize_str(self, v: &str) -> Result<(), Never> {
        self.add(v.len())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Never> {
        self.add(v.len())
    }
    fn serialize_none(self) -> Result<(), Never> {
        self.add(1)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Never> {
        self.add(1)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        self.add(1)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        self.add(1)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Never> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Never> {
        Ok(self)
    }
}

/// The compound forms: each element counted where it is written.
macro_rules! compound {
    ($($trait:ident::$method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Count {
            type Ok = ();
            type Error = Never;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Never> {
                Ok(())
            }
        })*
    };
}

compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for &mut Count {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

/// Struct fields: their values (a field's name is in the type, not on the heap).
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Count {
            type Ok = ();
            type Error = Never;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), Never> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), Never> {
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::heap_bytes;

    #[test]
    fn text_and_bytes_count_at_their_length_numbers_at_their_width() {
        assert_eq!(heap_bytes(&"x".repeat(1000)), 1000);
        assert_eq!(heap_bytes(&vec![7u32; 10]), 40);
        assert_eq!(heap_bytes(&(1u64, "ab".to_owned(), Some(3u8))), 11);
        let nested: Vec<(String, Vec<u16>)> = vec![("key".into(), vec![1, 2])];
        assert_eq!(heap_bytes(&nested), 7);
    }
}
