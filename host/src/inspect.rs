//! Looking at wasm bytes before trusting them: is it wasm at all, a core
//! module or a component, and what does a component import and export.
//!
//! Used at load time (to give a specific error before compiling) and by
//! `chassis inspect` (to print a component's world as WIT).

use crate::LoadError;
use crate::error::Error;

/// What a byte string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A WebAssembly component.
    Component,
    /// A core WebAssembly module.
    CoreModule,
}

/// Classify `bytes`, or say why they are not wasm. `origin` names them in errors.
pub fn classify(bytes: &[u8], origin: &str) -> Result<WasmKind, Error> {
    let not_wasm = |reason: String| {
        Error::Load(LoadError::NotWasm {
            origin: origin.to_string(),
            reason,
        })
    };
    if bytes.len() < 8 {
        return Err(not_wasm(format!(
            "{} bytes is too short for a wasm header",
            bytes.len()
        )));
    }
    if &bytes[..4] != b"\0asm" {
        let shown: Vec<String> = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
        return Err(not_wasm(format!(
            "bad magic number {} (expected 00 61 73 6d, \"\\0asm\")",
            shown.join(" ")
        )));
    }
    if wasmparser::Parser::is_component(bytes) {
        Ok(WasmKind::Component)
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Ok(WasmKind::CoreModule)
    } else {
        Err(not_wasm(format!(
            "unknown wasm version/layer {:02x?}",
            &bytes[4..8]
        )))
    }
}

/// `bytes` must be a component: not wasm, or a core module, is refused.
pub(crate) fn require_component(bytes: &[u8], origin: &str) -> Result<(), Error> {
    match classify(bytes, origin)? {
        WasmKind::CoreModule => Err(Error::Load(LoadError::CoreModule {
            origin: origin.into(),
        })),
        WasmKind::Component => Ok(()),
    }
}

/// The world of a component, printed as WIT (imports and exports).
pub fn component_wit(bytes: &[u8], origin: &str) -> Result<String, Error> {
    require_component(bytes, origin)?;
    let invalid = |reason: String| {
        Error::Load(LoadError::InvalidComponent {
            origin: origin.to_string(),
            reason,
        })
    };
    let decoded = wit_component::decode(bytes).map_err(|e| invalid(format!("{e:#}")))?;
    let (resolve, world) = match decoded {
        wit_component::DecodedWasm::Component(resolve, world) => (resolve, world),
        wit_component::DecodedWasm::WitPackage(..) => {
            return Err(invalid(
                "this is a WIT package, not a runnable component".to_string(),
            ));
        }
    };
    let package = resolve.worlds[world]
        .package
        .ok_or_else(|| invalid("the component's world has no package".to_string()))?;
    let mut printer = wit_component::WitPrinter::default();
    printer
        .print(&resolve, package, &[])
        .map_err(|e| invalid(format!("{e:#}")))?;
    Ok(printer.output.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_not_wasm() {
        let err = classify(b"hello, this is text", "x.wasm").unwrap_err();
        assert!(err.to_string().contains("not a valid wasm file"), "{err}");
        assert!(err.to_string().contains("bad magic number"), "{err}");
    }

    #[test]
    fn short_input_is_not_wasm() {
        let err = classify(b"\0as", "x.wasm").unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }

    #[test]
    fn core_module_header_is_recognised() {
        let core = b"\0asm\x01\0\0\0";
        assert_eq!(classify(core, "m").unwrap(), WasmKind::CoreModule);
        let component = b"\0asm\x0d\0\x01\0";
        assert_eq!(classify(component, "c").unwrap(), WasmKind::Component);
    }
}
