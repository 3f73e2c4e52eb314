//! Reading an encoded `google.protobuf.FileDescriptorSet` for its methods: path, whether
//! unary, and whether marked `idempotency_level = NO_SIDE_EFFECTS`. Decoded with
//! `prost-types`, the protobuf descriptor types tonic's code generator uses.

use std::fmt;

use prost::Message as _;
use prost_types::method_options::IdempotencyLevel;
use prost_types::{FileDescriptorSet, MethodDescriptorProto};

/// A file descriptor set [`CacheLayer::grpc_descriptors`](crate::CacheLayer::grpc_descriptors)
/// cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescriptorError(pub(crate) String);

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid file descriptor set: {}", self.0)
    }
}

impl std::error::Error for DescriptorError {}

/// One method of a service in a descriptor set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DescribedMethod {
    /// `/package.Service/Method`.
    pub(crate) path: String,
    pub(crate) unary: bool,
    pub(crate) no_side_effects: bool,
}

/// Every method of every service in the encoded `FileDescriptorSet` `data`.
pub(crate) fn described_methods(data: &[u8]) -> Result<Vec<DescribedMethod>, DescriptorError> {
    let set = FileDescriptorSet::decode(data).map_err(|e| DescriptorError(e.to_string()))?;
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let qualified = match file.package() {
                "" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            methods.extend(service.method.iter().map(|m| described(&qualified, m)));
        }
    }
    Ok(methods)
}

fn described(service: &str, method: &MethodDescriptorProto) -> DescribedMethod {
    let level = method.options.as_ref().map(|o| o.idempotency_level());
    DescribedMethod {
        path: format!("/{service}/{}", method.name()),
        unary: !method.client_streaming() && !method.server_streaming(),
        no_side_effects: level == Some(IdempotencyLevel::NoSideEffects),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{FileDescriptorProto, MethodOptions, ServiceDescriptorProto};

    fn method(
        name: &str,
        level: IdempotencyLevel,
        server_streaming: bool,
    ) -> MethodDescriptorProto {
        MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(".p.Req".into()),
            options: Some(MethodOptions {
                idempotency_level: Some(level.into()),
                ..MethodOptions::default()
            }),
            server_streaming: server_streaming.then_some(true),
            ..MethodDescriptorProto::default()
        }
    }

    fn set() -> Vec<u8> {
        let service = ServiceDescriptorProto {
            name: Some("Catalog".into()),
            method: vec![
                method("GetCourse", IdempotencyLevel::NoSideEffects, false),
                method("RenameCourse", IdempotencyLevel::Idempotent, false),
                method("ListCourses", IdempotencyLevel::NoSideEffects, true),
            ],
            ..ServiceDescriptorProto::default()
        };
        let file = FileDescriptorProto {
            name: Some("catalog.proto".into()),
            package: Some("catalog.v1".into()),
            service: vec![service],
            ..FileDescriptorProto::default()
        };
        FileDescriptorSet { file: vec![file] }.encode_to_vec()
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
    fn truncated_or_malformed_input_is_an_error() {
        let set = set();
        for cut in 1..set.len() {
            assert!(described_methods(&set[..cut]).is_err(), "cut at {cut}");
        }
        // Wire type 3 (a group) where the file message belongs; an overlong varint.
        assert!(described_methods(&[0x0b]).is_err());
        assert!(described_methods(&[0xff; 11]).is_err());
        assert_eq!(described_methods(&[]).unwrap(), []);
    }
}
