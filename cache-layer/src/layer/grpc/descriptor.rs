//! Reading an encoded `google.protobuf.FileDescriptorSet` for its methods: path, whether
//! unary, and whether marked `idempotency_level = NO_SIDE_EFFECTS`. Decoded by hand (a
//! protobuf wire-format walk over the few fields needed), so no protobuf crate is required.

use super::config::DescriptorError;

/// One method of a service in a descriptor set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DescribedMethod {
    /// `/package.Service/Method`.
    pub(crate) path: String,
    pub(crate) unary: bool,
    pub(crate) no_side_effects: bool,
}

// Field numbers from google/protobuf/descriptor.proto.
const SET_FILE: u64 = 1;
const FILE_PACKAGE: u64 = 2;
const FILE_SERVICE: u64 = 6;
const SERVICE_NAME: u64 = 1;
const SERVICE_METHOD: u64 = 2;
const METHOD_NAME: u64 = 1;
const METHOD_OPTIONS: u64 = 4;
const METHOD_CLIENT_STREAMING: u64 = 5;
const METHOD_SERVER_STREAMING: u64 = 6;
const OPTIONS_IDEMPOTENCY_LEVEL: u64 = 34;
/// `MethodOptions.IdempotencyLevel.NO_SIDE_EFFECTS`.
const NO_SIDE_EFFECTS: u64 = 1;

/// A field's value, as far as the walk needs it.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Walks the fields of one message.
struct Fields<'a> {
    data: &'a [u8],
    at: usize,
    /// Offset of `data` in the whole input, for error messages.
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8], base: usize) -> Self {
        Fields { data, at: 0, base }
    }

    fn error(&self, what: &str) -> DescriptorError {
        DescriptorError(format!("{what} at byte {}", self.base + self.at))
    }

    fn varint(&mut self) -> Result<u64, DescriptorError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.data.get(self.at) else {
                return Err(self.error("truncated varint"));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], DescriptorError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| self.error("truncated field"))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// The next field: its number, its value, and the value's offset in the whole input.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>, usize)>, DescriptorError> {
        if self.at == self.data.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 {
            return Err(self.error("field number 0"));
        }
        let offset = self.base + self.at;
        let value = match wire_type {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                let start = self.base + self.at;
                let bytes = self.skip(len)?;
                return Ok(Some((number, Value::Bytes(bytes), start)));
            }
            5 => self.skip(4).map(|_| Value::Fixed)?,
            other => return Err(self.error(&format!("unsupported wire type {other}"))),
        };
        Ok(Some((number, value, offset)))
    }
}

fn text(bytes: &[u8], offset: usize) -> Result<&str, DescriptorError> {
    std::str::from_utf8(bytes)
        .map_err(|_| DescriptorError(format!("a name that is not UTF-8 at byte {offset}")))
}

/// Every method of every service in the encoded `FileDescriptorSet` `data`.
pub(crate) fn described_methods(data: &[u8]) -> Result<Vec<DescribedMethod>, DescriptorError> {
    let mut methods = Vec::new();
    let mut set = Fields::new(data, 0);
    while let Some((number, value, at)) = set.next()? {
        if let (SET_FILE, Value::Bytes(file)) = (number, value) {
            read_file(file, at, &mut methods)?;
        }
    }
    Ok(methods)
}

fn read_file(
    data: &[u8],
    base: usize,
    methods: &mut Vec<DescribedMethod>,
) -> Result<(), DescriptorError> {
    let mut package = "";
    let mut services = Vec::new();
    let mut file = Fields::new(data, base);
    while let Some((number, value, at)) = file.next()? {
        match (number, value) {
            (FILE_PACKAGE, Value::Bytes(bytes)) => package = text(bytes, at)?,
            (FILE_SERVICE, Value::Bytes(bytes)) => services.push((bytes, at)),
            _ => {}
        }
    }
    for (service, at) in services {
        read_service(service, at, package, methods)?;
    }
    Ok(())
}

fn read_service(
    data: &[u8],
    base: usize,
    package: &str,
    methods: &mut Vec<DescribedMethod>,
) -> Result<(), DescriptorError> {
    let mut name = "";
    let mut listed = Vec::new();
    let mut service = Fields::new(data, base);
    while let Some((number, value, at)) = service.next()? {
        match (number, value) {
            (SERVICE_NAME, Value::Bytes(bytes)) => name = text(bytes, at)?,
            (SERVICE_METHOD, Value::Bytes(bytes)) => listed.push((bytes, at)),
            _ => {}
        }
    }
    let qualified = if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    };
    for (method, at) in listed {
        methods.push(read_method(method, at, &qualified)?);
    }
    Ok(())
}

fn read_method(
    data: &[u8],
    base: usize,
    service: &str,
) -> Result<DescribedMethod, DescriptorError> {
    let mut name = "";
    let mut streaming = false;
    let mut no_side_effects = false;
    let mut method = Fields::new(data, base);
    while let Some((number, value, at)) = method.next()? {
        match (number, value) {
            (METHOD_NAME, Value::Bytes(bytes)) => name = text(bytes, at)?,
            (METHOD_CLIENT_STREAMING | METHOD_SERVER_STREAMING, Value::Varint(v)) => {
                streaming |= v != 0;
            }
            (METHOD_OPTIONS, Value::Bytes(bytes)) => {
                let mut options = Fields::new(bytes, at);
                while let Some((number, value, _)) = options.next()? {
                    if let (OPTIONS_IDEMPOTENCY_LEVEL, Value::Varint(level)) = (number, value) {
                        no_side_effects = level == NO_SIDE_EFFECTS;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(DescribedMethod {
        path: format!("/{service}/{name}"),
        unary: !streaming,
        no_side_effects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field.
    fn field(number: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, u8::try_from(body.len()).unwrap()];
        out.extend_from_slice(body);
        out
    }

    fn method(name: &str, options: &[u8], server_streaming: bool) -> Vec<u8> {
        let mut out = field(1, name.as_bytes());
        out.extend(field(2, b".p.Req"));
        if !options.is_empty() {
            out.extend(field(4, options));
        }
        if server_streaming {
            out.extend([6 << 3, 1]);
        }
        out
    }

    fn set() -> Vec<u8> {
        // idempotency_level (34) = 1: key 34 << 3 | 0 = 272 = varint 0x90 0x02.
        let no_side_effects = [0x90, 0x02, 0x01];
        let idempotent = [0x90, 0x02, 0x02];
        let mut service = field(1, b"Catalog");
        service.extend(field(2, &method("GetCourse", &no_side_effects, false)));
        service.extend(field(2, &method("RenameCourse", &idempotent, false)));
        service.extend(field(2, &method("ListCourses", &no_side_effects, true)));
        let mut file = field(1, b"catalog.proto");
        file.extend(field(2, b"catalog.v1"));
        file.extend(field(6, &service));
        field(1, &file)
    }

    #[test]
    fn methods_with_paths_kinds_and_idempotency() {
        let methods = described_methods(&set()).unwrap();
        let summary: Vec<(&str, bool, bool)> = methods
            .iter()
            .map(|m| (m.path.as_str(), m.unary, m.no_side_effects))
            .collect();
        assert_eq!(
            summary,
            [
                ("/catalog.v1.Catalog/GetCourse", true, true),
                ("/catalog.v1.Catalog/RenameCourse", true, false),
                ("/catalog.v1.Catalog/ListCourses", false, true),
            ]
        );
    }

    #[test]
    fn truncated_or_malformed_input_is_an_error_with_a_position() {
        let set = set();
        for cut in 1..set.len() {
            let error = described_methods(&set[..cut]).unwrap_err();
            assert!(error.0.contains("at byte"), "{error}");
        }
        let error = described_methods(&[0x0b]).unwrap_err();
        assert_eq!(error.0, "unsupported wire type 3 at byte 1");
        assert!(described_methods(&[0xff; 11]).is_err());
        assert_eq!(described_methods(&[]).unwrap(), []);
    }
}
