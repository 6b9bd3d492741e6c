//! The protobuf JSON mapping of the messages: a one-shot mount plan is a `MountRequest`
//! in JSON (field names in lowerCamelCase or as in the .proto, enums by name, bytes in
//! base64, unknown fields rejected), and the one-shot `--json` output is a
//! `MountResponse` in JSON.

use protobuf::MessageFull;
use protobuf_json_mapping::{ParseOptions, PrintOptions};

use crate::v1::guest::MountRequest;

/// A JSON document that is not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The text is not JSON, names an unknown field, or has a value of the wrong type.
    #[error("invalid {message} JSON: {source}")]
    Parse {
        /// The protobuf message the text should hold.
        message: &'static str,
        /// What the JSON parser found.
        #[source]
        source: protobuf_json_mapping::ParseError,
    },
    /// The text is not JSON (RFC 8259). Checked before the JSON mapping's own parser, which
    /// accepts more than JSON (protobuf text-format escapes such as `\777`) and overflows
    /// on some of it.
    #[error("invalid {message} JSON: {source}")]
    NotJson {
        /// The protobuf message the text should hold.
        message: &'static str,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The message cannot be printed (a value outside its enum, for instance).
    #[error("cannot print {message} as JSON: {source}")]
    Print {
        /// The protobuf message being printed.
        message: &'static str,
        /// What the JSON printer found.
        #[source]
        source: protobuf_json_mapping::PrintError,
    },
}

/// Parses a one-shot mount plan: the JSON mapping of a `MountRequest`. Unknown fields are
/// errors, so a misspelt field never silently drops a parameter.
pub fn parse_mount_request(json: &str) -> Result<MountRequest, JsonError> {
    parse(json)
}

/// Parses the JSON mapping of any message of the protocol, rejecting unknown fields.
pub fn parse<M: MessageFull>(json: &str) -> Result<M, JsonError> {
    serde_json::from_str::<serde_json::Value>(json).map_err(|source| JsonError::NotJson {
        message: M::NAME,
        source,
    })?;
    let options = ParseOptions {
        ignore_unknown_fields: false,
        ..Default::default()
    };
    protobuf_json_mapping::parse_from_str_with_options(json, &options).map_err(|source| {
        JsonError::Parse {
            message: M::NAME,
            source,
        }
    })
}

/// Prints a one-shot mount plan in the JSON mapping with its default lowerCamelCase field
/// names (`containerId`, `rootHash`), enums by name and bytes in base64: exactly what
/// `layerpass-guest mount --plan` reads. Fields with default values are left out.
pub fn print_plan(request: &MountRequest) -> Result<String, JsonError> {
    protobuf_json_mapping::print_to_string_with_options(request, &PrintOptions::default()).map_err(
        |source| JsonError::Print {
            message: <MountRequest as protobuf::Message>::NAME,
            source,
        },
    )
}

/// Prints a message in the JSON mapping, with the .proto field names (`container_id`,
/// `root_hash`) and default values included, so scripts see every field.
pub fn print<M: MessageFull>(message: &M) -> Result<String, JsonError> {
    let options = PrintOptions {
        proto_field_name: true,
        always_output_default_values: true,
        ..Default::default()
    };
    protobuf_json_mapping::print_to_string_with_options(message, &options).map_err(|source| {
        JsonError::Print {
            message: M::NAME,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::guest::{CorruptionMode, HashAlgorithm, MountResponse};

    const PLAN: &str = r#"{
      "containerId": "c1",
      "layers": [
        {
          "digest": "sha256:aa",
          "disk": {"serial": "layer-aa"},
          "fsType": "FS_TYPE_EROFS",
          "verity": {
            "algorithm": "HASH_ALGORITHM_SHA256",
            "format": 1,
            "dataBlockSize": 4096,
            "hashBlockSize": 4096,
            "dataBlocks": "12",
            "hashStartBlock": 13,
            "salt": "AAAA",
            "rootHash": "3q2+7w==",
            "onCorruption": "CORRUPTION_MODE_PANIC"
          }
        },
        {
          "digest": "sha256:bb",
          "disk": {"partition": {"serial": "image-1", "name": "layer-bb"}},
          "fs_type": "FS_TYPE_EROFS"
        }
      ],
      "upper": {"tmpfs": {"sizeBytes": "1048576"}},
      "mountPoint": "/run/c1",
      "overlay": {"volatile": true}
    }"#;

    #[test]
    fn parses_a_plan_with_both_name_styles() {
        let plan = parse_mount_request(PLAN).unwrap();
        assert_eq!(plan.container_id, "c1");
        assert_eq!(plan.layers.len(), 2);
        let verity = plan.layers[0].verity.as_ref().unwrap();
        assert_eq!(
            verity.algorithm.enum_value(),
            Ok(HashAlgorithm::HASH_ALGORITHM_SHA256)
        );
        assert_eq!(verity.data_blocks, 12);
        assert_eq!(verity.hash_start_block, 13);
        assert_eq!(verity.salt, vec![0, 0, 0]);
        assert_eq!(verity.root_hash, vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            verity.on_corruption.enum_value(),
            Ok(CorruptionMode::CORRUPTION_MODE_PANIC)
        );
        assert!(plan.layers[0].disk.has_serial());
        assert_eq!(plan.layers[1].disk.partition().name, "layer-bb");
        assert!(plan.layers[1].verity.is_none());
        assert_eq!(plan.upper.tmpfs().size_bytes, 1 << 20);
        assert!(plan.overlay.volatile);
        assert!(!plan.overlay.userxattr);
    }

    #[test]
    fn parses_and_prints_an_encrypted_disk_upper() {
        let text =
            r#"{"containerId": "c1", "upper": {"encryptedDisk": {"disk": {"serial": "S"}}}}"#;
        let plan = parse_mount_request(text).unwrap();
        assert!(plan.upper.has_encrypted_disk());
        assert_eq!(plan.upper.encrypted_disk().disk.serial(), "S");
        let printed = print_plan(&plan).unwrap();
        let value: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(
            value["upper"],
            serde_json::json!({"encryptedDisk": {"disk": {"serial": "S"}}}),
            "{printed}"
        );
        assert_eq!(parse_mount_request(&printed).unwrap(), plan);
        // The .proto field name is read too.
        let snake = r#"{"upper": {"encrypted_disk": {"disk": {"serial": "S"}}}}"#;
        assert_eq!(parse_mount_request(snake).unwrap().upper, plan.upper);
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_field() {
        let err = parse_mount_request(r#"{"containerId": "c1", "rootHash": "x"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("MountRequest"), "{text}");
        assert!(text.contains("rootHash"), "{text}");
    }

    #[test]
    fn bad_enum_names_and_bad_json_are_errors() {
        let err = parse_mount_request(r#"{"layers": [{"fsType": "EXT4"}]}"#).unwrap_err();
        assert!(err.to_string().contains("EXT4"), "{err}");
        assert!(parse_mount_request("{").is_err());
    }

    #[test]
    fn text_format_escapes_are_not_json() {
        // protobuf-json-mapping's lexer reads `\778` as an octal escape and overflows a u8
        // (a panic with overflow checks): found by the mount_plan_json fuzz target.
        for text in [r#"{"containerId": "\778"}"#, r#"{"containerId": "\x41"}"#] {
            let err = parse_mount_request(text).unwrap_err();
            assert!(matches!(err, JsonError::NotJson { .. }), "{text}: {err}");
        }
        let plan = parse_mount_request(r#"{"containerId": "c\u0031\n"}"#).unwrap();
        assert_eq!(plan.container_id, "c1\n");
    }

    #[test]
    fn prints_with_proto_names_and_defaults() {
        let mut response = MountResponse::new();
        response.container_id = "c1".into();
        response.rootfs = "/run/layerpass/containers/c1/rootfs".into();
        let text = print(&response).unwrap();
        assert!(text.contains(r#""container_id": "c1""#), "{text}");
        assert!(text.contains(r#""layers": []"#), "{text}");
        let back: MountResponse = parse(&text).unwrap();
        assert_eq!(back, response);
    }
}
